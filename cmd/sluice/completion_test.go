package main

import (
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestComplete(t *testing.T) {
	for _, tc := range []struct {
		name  string
		words []string
		want  []string
	}{
		{"commands", []string{"ap"}, []string{"approvals", "approve"}},
		{"version flag", []string{"--v"}, []string{"--version"}},
		{"flags of run", []string{"run", "f.yaml", "--wa"}, []string{"--wait", "--wait-timeout"}},
		{"value of a flag: files", []string{"run", "--config", ""}, nil},
		{"after a bool flag: files", []string{"run", "--json", ""}, nil},
		{"subcommands", []string{"audit", ""}, []string{"export", "verify"}},
		{"subcommand given", []string{"audit", "export", ""}, nil},
		{"shells", []string{"completion", "f"}, []string{"fish"}},
		{"help topics", []string{"help", "tr"}, []string{"trace"}},
		{"unknown command", []string{"nope", ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := complete(tc.words); !slices.Equal(got, tc.want) {
				t.Errorf("complete(%q) = %q, want %q", tc.words, got, tc.want)
			}
		})
	}
	// Every command is offered first.
	all := complete([]string{""})
	for _, cmd := range commands() {
		if !slices.Contains(all, cmd.name) {
			t.Errorf("command %s is not completed", cmd.name)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range completionShells {
		code, out, _ := runCLI(t, "", "completion", sh)
		if code != 0 || !strings.Contains(out, "completion complete") {
			t.Errorf("completion %s: exit %d\n%s", sh, code, out)
		}
	}
	code, out, _ := runCLI(t, "", "completion", "complete", "run", "--j")
	if code != 0 || out != "--json\n" {
		t.Errorf("completion complete run --j: exit %d %q", code, out)
	}
}

func TestBuildCommit(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}
	for _, tc := range []struct {
		set      string
		settings []debug.BuildSetting
		want     string
	}{
		{"", nil, "unknown"},
		{"", []debug.BuildSetting{rev}, "abc123"},
		{"", []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "true"}}, "abc123-dirty"},
		{"", []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "false"}}, "abc123"},
		{"def456", []debug.BuildSetting{rev}, "def456"},
	} {
		if got := buildCommit(tc.set, tc.settings); got != tc.want {
			t.Errorf("buildCommit(%q, %v) = %q, want %q", tc.set, tc.settings, got, tc.want)
		}
	}
}
