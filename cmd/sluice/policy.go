package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/schemas"
)

func policyCommand() *command {
	return &command{
		name:  "policy",
		usage: "policy test FILE… [--config FILE] [-v]",
		short: "run policy decision tests",
		long: `policy test runs decision cases against the deployment's policy, the way
'opa test' does. Each FILE is either a cases file (its top-level key is
cases:) or a policy file, loaded after the default policy and the policy
files of the configuration (--config, else ./sluice.yaml, else the built-in
defaults), and checked against the configuration's tools, exactly as 'sluice
run' loads them.

A case gives a call — its tool, context label, argument labels and
arguments — and the decision it must get: the action, and optionally the
rules the decision names. Each failing case is printed with what it wanted
and what it got; the last line says how many passed and failed. Exits 0 when
every case passes, 1 when one fails or a file does not load, 2 on a usage
error.

Example cases file:
  cases:
    - name: a payee from the web is held
      tool: {name: payment.charge, privileged: true, approvable: true,
             clearance: {integrity: trusted, secrecy: [payment, pii]}}
      label: {integrity: untrusted, sources: ["web:hotel.example"]}
      args: {amount: 90, currency: EUR, payee: acct_hotel_1}
      want: {action: approve, rules: [clearance, untrusted-never-pays-alone]}

Examples:
  sluice policy test examples/travel/policy.yaml examples/travel/policy_test.yaml
  sluice policy test --config deploy/sluice.yaml tests/*.yaml`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			verbose := fs.Bool("v", false, "print passing cases too")
			return func(c *cli, _ context.Context, args []string) int {
				if len(args) == 0 || args[0] != "test" {
					c.errorf("policy: the subcommand is test: sluice policy test FILE…")
					return exitUsage
				}
				if len(args) == 1 {
					c.errorf("policy test: give at least one cases file")
					return exitUsage
				}
				return c.policyTest(*cfgFile, args[1:], *verbose)
			}
		},
	}
}

// policyTest loads the policy and the cases and runs them.
func (c *cli) policyTest(cfgFile string, files []string, verbose bool) int {
	var policies, caseFiles []policy.File
	var errs []error
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := policy.File{Name: name, Src: src}
		if isCases(f) {
			caseFiles = append(caseFiles, f)
		} else {
			policies = append(policies, f)
		}
	}
	if len(errs) > 0 {
		c.report(errors.Join(errs...))
		return exitFailure
	}
	if len(caseFiles) == 0 {
		c.errorf("policy test: no cases file among %d files (a cases file has a top-level cases: key)", len(files))
		return exitUsage
	}
	dep, err := c.loadConfig(cfgFile)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	set, err := orchestrator.LoadPolicy(dep, policies...)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	var cases []policy.Case
	var ds schemas.Diagnostics
	for _, f := range caseFiles {
		cs, err := policy.LoadCases(f)
		if err != nil {
			if d, ok := schemas.AsDiagnostics(err); ok {
				ds = append(ds, d...)
				continue
			}
			c.report(err)
			return exitFailure
		}
		cases = append(cases, cs...)
	}
	if len(ds) > 0 {
		c.report(ds)
		return exitFailure
	}
	passed, failed := 0, 0
	for _, tc := range cases {
		err := tc.Check(set.Decide(tc.Input))
		if err == nil {
			passed++
			if verbose {
				fmt.Fprintf(c.stdout, "--- PASS: %s (%s:%d:%d)\n", tc.Name, tc.File, tc.Line, tc.Col)
			}
			continue
		}
		failed++
		fmt.Fprintf(c.stdout, "--- FAIL: %s (%s:%d:%d)\n", tc.Name, tc.File, tc.Line, tc.Col)
		var f *policy.CaseFailure
		if errors.As(err, &f) {
			fmt.Fprint(c.stdout, f.Diff())
		} else {
			fmt.Fprintf(c.stdout, "    %v\n", err)
		}
	}
	fmt.Fprintf(c.stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

// isCases reports whether f is a cases file: a YAML mapping with a
// top-level cases key. Anything else, including a file that does not
// parse, is loaded as a policy file, which reports its problems.
func isCases(f policy.File) bool {
	doc, _ := schemas.ParseYAML(f.Name, f.Src)
	if doc == nil {
		return false
	}
	root, ok := doc.Value.(map[string]any)
	if !ok {
		return false
	}
	_, ok = root["cases"]
	return ok
}
