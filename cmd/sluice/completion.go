package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionShells are the shells 'sluice completion' writes a script for.
var completionShells = []string{"bash", "zsh", "fish"}

func completionCommand() *command {
	return &command{
		name:  "completion",
		usage: "completion bash|zsh|fish",
		short: "print a shell completion script",
		long: `Prints a script that completes sluice's commands, subcommands and flags
in bash, zsh or fish; where nothing else fits, file names are completed.
The script asks the sluice binary it completes for the candidates
('sluice completion complete WORD…', which prints one per line), so it
never lags behind the commands of that binary.

Load it for the current shell, or install it for every new one:

  bash:  source <(sluice completion bash)
         sluice completion bash > ~/.local/share/bash-completion/completions/sluice
  zsh:   source <(sluice completion zsh)      (after compinit)
         sluice completion zsh > "${fpath[1]}/_sluice"
  fish:  sluice completion fish | source
         sluice completion fish > ~/.config/fish/completions/sluice.fish

Examples:
  sluice completion bash
  sluice completion fish`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			return func(c *cli, _ context.Context, args []string) int {
				if len(args) != 1 || !slices.Contains(completionShells, args[0]) {
					c.errorf("completion: name one shell: %s (got %q)", strings.Join(completionShells, ", "), strings.Join(args, " "))
					return exitUsage
				}
				writeCompletion(c.stdout, args[0])
				return exitOK
			}
		},
	}
}

// subcommands are the words a command takes first, where it takes a
// fixed word.
var subcommands = map[string][]string{
	"audit":      {"export", "verify"},
	"policy":     {"test"},
	"worker":     {"discover"},
	"completion": completionShells,
}

// complete returns the candidates for the last of words, the words typed
// after "sluice" (the last one possibly empty or partial). No candidate
// means: complete a file name.
func complete(words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	var cands []string
	if len(words) == 1 {
		cands = append(cands, "help", "--version")
		for _, cmd := range commands() {
			cands = append(cands, cmd.name)
		}
		return withPrefix(cands, cur)
	}
	name := words[0]
	if name == "help" {
		if len(words) != 2 {
			return nil
		}
		for _, cmd := range commands() {
			cands = append(cands, cmd.name)
		}
		return withPrefix(cands, cur)
	}
	cmd := find(name)
	if cmd == nil {
		return nil
	}
	fs := newFlagSet(cmd.name)
	cmd.flags(fs)
	if strings.HasPrefix(cur, "-") {
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 {
				cands = append(cands, "--"+f.Name)
			} else {
				cands = append(cands, "-"+f.Name)
			}
		})
		cands = append(cands, "--help")
		return withPrefix(cands, cur)
	}
	// The value of a flag that takes one: a file name, or whatever the
	// shell completes.
	if prev := words[len(words)-2]; strings.HasPrefix(prev, "-") && !strings.Contains(prev, "=") {
		if f := fs.Lookup(strings.TrimLeft(prev, "-")); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				return nil
			}
		}
	}
	if subs := subcommands[name]; subs != nil && !slices.ContainsFunc(words[1:len(words)-1], func(w string) bool { return slices.Contains(subs, w) }) {
		return withPrefix(subs, cur)
	}
	return nil
}

func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// writeCompletion writes the script for shell. Each script passes the
// words typed so far to 'sluice completion complete' and offers what it
// prints, or file names when it prints nothing.
func writeCompletion(w io.Writer, shell string) {
	switch shell {
	case "bash":
		fmt.Fprint(w, `# bash completion for sluice: source <(sluice completion bash)
_sluice() {
	local IFS=$'\n'
	COMPREPLY=($("${COMP_WORDS[0]}" completion complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _sluice sluice
`)
	case "zsh":
		fmt.Fprint(w, `#compdef sluice
# zsh completion for sluice: source <(sluice completion zsh), after compinit
_sluice() {
	local -a cands
	cands=(${(f)"$(${words[1]} completion complete "${(@)words[2,CURRENT]}" 2>/dev/null)"})
	if (( ${#cands} )); then
		compadd -a cands
	else
		_files
	fi
}
if [ "$funcstack[1]" = "_sluice" ]; then
	_sluice "$@"
else
	compdef _sluice sluice
fi
`)
	case "fish":
		fmt.Fprint(w, `# fish completion for sluice: sluice completion fish | source
function __sluice_complete
	set -l words (commandline -opc) (commandline -ct)
	$words[1] completion complete $words[2..-1] 2>/dev/null
end
complete -c sluice -a '(__sluice_complete)'
`)
	}
}
