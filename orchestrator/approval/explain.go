package approval

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc"
)

// Explain says in plain words why a call is held, for the person asked:
// which arguments fail the tool's clearance, on trust or on secrecy, and
// every source of what fails, including a context that no argument shows
// (an if: condition, or what an agent had read before it proposed the
// call); then the policy rules that hold it, with their reasons. The
// lattice's words stay in the decision's reasons (--json, trace).
func Explain(tool string, clearance ifc.Clearance, label ifc.Label, argLabels map[string]ifc.Label, rules, reasons []string) []string {
	var out []string
	names := slices.Sorted(maps.Keys(argLabels))
	if label.Integrity() < clearance.Integrity() {
		out = append(out, untrusted(tool, label, argLabels, names)...)
	}
	for _, tag := range label.Secrecy() {
		if slices.Contains(clearance.Secrecy(), tag) {
			continue
		}
		var carry []string
		var srcs []string
		for _, n := range names {
			if slices.Contains(argLabels[n].Secrecy(), tag) {
				carry = append(carry, n)
				srcs = append(srcs, argLabels[n].Sources()...)
			}
		}
		if len(carry) == 0 {
			out = append(out, fmt.Sprintf("the call would reveal %s data (%s) that %s may not receive",
				tag, plainSources(label.Sources()), tool))
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s data (%s), which %s may not receive",
			list(carry), verb(len(carry), "carries", "carry"), tag, plainSources(srcs), tool))
	}
	for i, r := range rules {
		if r == "clearance" {
			continue
		}
		why := ""
		if i < len(reasons) {
			why = reasons[i]
		}
		if why == "" {
			out = append(out, fmt.Sprintf("the policy's rule %s holds %s calls like this one for a person", r, tool))
			continue
		}
		out = append(out, fmt.Sprintf("the policy's rule %s: %s", r, why))
	}
	if len(out) == 0 {
		out = append(out, "the policy holds this call for a person")
	}
	return out
}

// untrusted explains a context below the tool's trust: the arguments that
// came from untrusted sources, and a context that decided the call beyond
// them.
func untrusted(tool string, label ifc.Label, argLabels map[string]ifc.Label, names []string) []string {
	var out, low []string
	argSrcs := map[string]bool{}
	for _, n := range names {
		if argLabels[n].Integrity() == ifc.Untrusted {
			low = append(low, n)
			for _, s := range argLabels[n].Sources() {
				argSrcs[s] = true
			}
		}
	}
	var ctx []string // what decided the call that no untrusted argument shows
	for _, s := range label.Sources() {
		if !argSrcs[s] && !trustedSource(s) {
			ctx = append(ctx, s)
		}
	}
	all := len(low) == len(names) && len(names) > 0
	switch {
	case all && len(names) > 1 && sameSources(argLabels, names):
		out = append(out, fmt.Sprintf("every argument of this call carries what was read before it was proposed — %s — "+
			"(an agent's context, or an if: condition), which Sluice does not trust to decide %s",
			plainSources(label.Sources()), tool))
		return out
	case len(low) > 0:
		out = append(out, fmt.Sprintf("%s came from %s, which Sluice does not trust to decide %s",
			list(low), plainSources(slices.Sorted(maps.Keys(argSrcs))), tool))
	}
	if len(ctx) > 0 || len(low) == 0 {
		what := plainSources(ctx)
		if len(ctx) == 0 {
			what = plainSources(label.Sources())
		}
		out = append(out, fmt.Sprintf("whether to make this call was decided by %s (an if: condition, or what an agent had read), "+
			"which Sluice does not trust to decide %s", what, tool))
	}
	return out
}

func sameSources(argLabels map[string]ifc.Label, names []string) bool {
	first := argLabels[names[0]]
	for _, n := range names[1:] {
		if !slices.Equal(argLabels[n].Sources(), first.Sources()) || argLabels[n].Integrity() != first.Integrity() {
			return false
		}
	}
	return true
}

func trustedSource(s string) bool {
	return s == ifc.SourceUser || s == ifc.SourceFlow || strings.HasPrefix(s, "approved:") ||
		strings.HasPrefix(s, "endorsed:") || strings.HasPrefix(s, "declassified:")
}

// plainSources names sources as a person reads them. The tools a value
// passed through are left out when where it came from is known.
func plainSources(srcs []string) string {
	origin := slices.ContainsFunc(srcs, func(s string) bool { return !strings.HasPrefix(s, "tool:") })
	seen := map[string]bool{}
	var out []string
	for _, s := range srcs {
		if origin && strings.HasPrefix(s, "tool:") {
			continue
		}
		p := plainSource(s)
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "an unnamed source"
	}
	return list(out)
}

func plainSource(s string) string {
	kind, rest, _ := strings.Cut(s, ":")
	switch kind {
	case "web":
		return "the web page " + rest
	case "api":
		return "the API at " + rest
	case "tool":
		return "the output of " + rest
	case "file":
		return "the file " + rest
	case "mail", "email":
		return "the mail from " + rest
	case "calendar":
		return "the calendar invitation from " + rest
	case "worker":
		return "what worker " + rest + " claimed"
	case ifc.SourceUser:
		return "you"
	case ifc.SourceFlow:
		return "the flow"
	}
	return s
}

// list joins words as a sentence does: "a", "a and b", "a, b and c".
func list(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
