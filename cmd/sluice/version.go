package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…" (make
// build sets it from git describe); without it, the module version the
// go command recorded is shown.
var version = "dev"

// commit is set at build time with -ldflags "-X main.commit=…" (make build
// sets it from git rev-parse HEAD); without it, the VCS revision the go
// command recorded is shown.
var commit = ""

func versionCommand() *command {
	return &command{
		name:  "version",
		usage: "version",
		short: "print the version",
		long: `Prints the version of sluice (as make build sets it, else the module
version the go command recorded: "(devel)" for a build from a checkout),
the commit it was built from (with "-dirty" when the checkout had changes,
"unknown" when the build recorded none), the Go version it was built with,
and the versions of the modules that matter for security.
'sluice --version' prints the same.

Example:
  sluice version`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			return func(c *cli, _ context.Context, args []string) int {
				if len(args) > 0 {
					c.errorf("version takes no arguments")
					return exitUsage
				}
				printVersion(c.stdout)
				return exitOK
			}
		},
	}
}

// printVersion writes the version lines: "sluice VERSION", "commit REV",
// "go VERSION", then one line per security-relevant module.
func printVersion(w io.Writer) {
	bi, ok := debug.ReadBuildInfo()
	v := version
	if v == "dev" && ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintf(w, "sluice %s\n", v)
	if !ok {
		fmt.Fprintf(w, "commit %s\n", buildCommit(commit, nil))
		return
	}
	fmt.Fprintf(w, "commit %s\n", buildCommit(commit, bi.Settings))
	fmt.Fprintf(w, "go %s\n", bi.GoVersion)
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/nats-io/nats-server/v2", "github.com/nats-io/nats.go", "cel.dev/cel-go", "github.com/tetratelabs/wazero":
			fmt.Fprintf(w, "%s %s\n", d.Path, d.Version)
		}
	}
}

// buildCommit is the commit set at build time, else the VCS revision the
// go command stamped into the binary with "-dirty" when the tree had
// changes, else "unknown".
func buildCommit(set string, settings []debug.BuildSetting) string {
	if set != "" {
		return set
	}
	rev, dirty := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
