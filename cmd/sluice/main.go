// Command sluice runs AI-agent workflows as narrowly privileged worker
// processes joined by NATS, with every value labeled and every call checked
// by policy. Run `sluice help` for the commands.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
