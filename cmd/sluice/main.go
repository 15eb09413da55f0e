// Command sluice runs AI-agent workflows as narrowly privileged worker
// processes joined by NATS, with every value labeled and every call checked
// by policy. Run `sluice help` for the commands.
package main

import (
	"os"

	"github.com/sluicehq/sluice/worker/mcp"
)

func main() {
	if os.Getenv(mcp.LauncherEnv) == "1" {
		// The launcher of a stdio MCP server with network grants, run
		// by its worker; descriptor 3 is its end of their socket pair.
		os.Exit(mcp.Launch(os.NewFile(3, "worker"), os.Stderr))
	}
	if os.Getenv(mcp.ProbeEnv) == "1" {
		// sluice doctor, asking whether a namespace can be made.
		os.Exit(0)
	}
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
