package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes (DESIGN §11).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitDenied  = 3
	exitHeld    = 4
	// exitInterrupted: sluice run was interrupted (Ctrl-C, SIGTERM), the
	// shell's convention for a process ended by SIGINT (128+2).
	exitInterrupted = 130
)

// cli is what a command runs with; tests build one in-process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name  string
	usage string // one line, after "sluice "
	short string
	long  string // description and examples
	flags func(fs *flag.FlagSet) func(c *cli, ctx context.Context, args []string) int
}

func commands() []*command {
	return []*command{upCommand(), runCommand(), lintCommand(), policyCommand(), doctorCommand(), auditCommand(), runsCommand(), reloadCommand(), traceCommand(), approvalsCommand(), approveCommand(true), approveCommand(false), registryCommand(), cancelCommand(), workerCommand(), mcpCommand(), versionCommand(), completionCommand()}
}

// Main runs the command line args and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if cmd := find(args[1]); cmd != nil {
				c.help(cmd, c.stdout)
				return exitOK
			}
		}
		c.overview(c.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "--version" {
		if len(args) > 1 {
			c.errorf("--version takes no arguments")
			return exitUsage
		}
		printVersion(c.stdout)
		return exitOK
	}
	if len(args) >= 2 && args[0] == "completion" && args[1] == "complete" {
		// The words being completed are not this command's flags.
		for _, s := range complete(args[2:]) {
			fmt.Fprintln(c.stdout, s)
		}
		return exitOK
	}
	cmd := find(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "sluice: unknown command %q\n\n", args[0])
		c.overview(c.stderr)
		return exitUsage
	}
	fs := newFlagSet(cmd.name)
	run := cmd.flags(fs)
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		c.help(cmd, c.stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "sluice %s: %v\nusage: sluice %s\nRun 'sluice help %s' for details.\n", cmd.name, err, cmd.usage, cmd.name)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(c, ctx, pos)
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func find(name string) *command {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("sluice run flow.yaml --input a=b"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" (consumed) or at the first positional argument.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *cli) overview(w io.Writer) {
	fmt.Fprint(w, `sluice runs AI-agent workflows as small, narrowly privileged worker processes
joined by NATS. Every value is labeled with where it came from, and CEL
policies decide every call before it is delivered: untrusted web content can
never decide a payment, a mail or a booking on its own.

Usage: sluice <command> [arguments]
       sluice --version

Commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", cmd.name, cmd.short)
	}
	fmt.Fprint(w, "\nRun 'sluice help <command>' for more about a command.\n")
}

func (c *cli) help(cmd *command, w io.Writer) {
	fmt.Fprintf(w, "usage: sluice %s\n\n%s\n", cmd.usage, strings.TrimSpace(cmd.long))
	fs := newFlagSet(cmd.name)
	cmd.flags(fs)
	var has bool
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			if len(f.Name) > 1 {
				fmt.Fprintf(w, "  --%s", f.Name)
			} else {
				fmt.Fprintf(w, "  -%s", f.Name)
			}
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			fmt.Fprintf(w, "\n    \t%s", usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" && f.DefValue != "[]" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
}

// logger builds the one logger of the process: text on a terminal, JSON
// otherwise, on stderr.
func (c *cli) logger(level slog.Level, forceJSON bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if !forceJSON && isTerminal(c.stderr) {
		return slog.New(slog.NewTextHandler(c.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(c.stderr, opts))
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "sluice: "+format+"\n", args...)
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
