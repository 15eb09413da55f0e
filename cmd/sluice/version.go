package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func versionCommand() *command {
	return &command{
		name:  "version",
		usage: "version",
		short: "print the version",
		long:  "Prints the version of sluice, of Go, and of the modules that matter for security.",
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			return func(c *cli, _ context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("version takes no arguments")
					return exitUsage
				}
				fmt.Fprintf(c.stdout, "sluice %s\n", version)
				if bi, ok := debug.ReadBuildInfo(); ok {
					fmt.Fprintf(c.stdout, "go %s\n", bi.GoVersion)
					for _, d := range bi.Deps {
						switch d.Path {
						case "github.com/nats-io/nats-server/v2", "github.com/nats-io/nats.go", "cel.dev/cel-go", "github.com/tetratelabs/wazero":
							fmt.Fprintf(c.stdout, "%s %s\n", d.Path, d.Version)
						}
					}
				}
				return exitOK
			}
		},
	}
}
