package approval

import (
	"maps"
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/schemas"
)

// maxLookalike bounds the strings compared: longer ones are texts, not
// names.
const maxLookalike = 320

// Lookalikes flags the string arguments of a call of tool that look like,
// but are not, an entry of one of registries or the same argument of an
// earlier approved call of the same tool (among earlier).
func Lookalikes(tool string, args map[string]any, registries map[string][]string, earlier []Approval) []schemas.Lookalike {
	trusted := registered(registries)
	approved := approvedBefore(tool, earlier)
	var out []schemas.Lookalike
	for _, name := range slices.Sorted(maps.Keys(args)) {
		cands := slices.Clone(trusted)
		for _, v := range approved[name] {
			cands = append(cands, known{v, "approved before (" + tool + " " + name + ")"})
		}
		for _, s := range stringsOf(name, args[name]) {
			if len(s.value) <= maxLookalike {
				out = append(out, resembles(s, cands)...)
			}
		}
	}
	return out
}

// known is a value a person trusts, and where it is kept.
type known struct{ value, where string }

// registered lists the entries of every registry, by registry name.
func registered(registries map[string][]string) []known {
	var trusted []known
	for _, name := range slices.Sorted(maps.Keys(registries)) {
		for _, v := range registries[name] {
			trusted = append(trusted, known{v, "registry " + name})
		}
	}
	return trusted
}

// approvedBefore lists, by argument, the values of the earlier calls of
// tool a person approved.
func approvedBefore(tool string, earlier []Approval) map[string][]string {
	approved := map[string][]string{}
	for _, a := range earlier {
		if a.Tool != tool || a.Status != Approved && a.Status != Used {
			continue
		}
		for name, v := range a.Args {
			for _, s := range stringsOf(name, v) {
				approved[name] = append(approved[name], s.value)
			}
		}
	}
	return approved
}

// resembles flags each candidate s looks like without being it, once.
func resembles(s argString, cands []known) []schemas.Lookalike {
	var out []schemas.Lookalike
	seen := map[string]bool{}
	for _, k := range cands {
		if seen[k.value] || len(k.value) > maxLookalike || !display.Confusable(s.value, k.value) {
			continue
		}
		seen[k.value] = true
		out = append(out, schemas.Lookalike{Arg: s.arg, Value: s.value, Like: k.value, Where: k.where})
	}
	return out
}

type argString struct{ arg, value string }

// stringsOf lists the strings of an argument: the argument itself, or the
// elements of a list.
func stringsOf(name string, v any) []argString {
	switch v := v.(type) {
	case string:
		return []argString{{name, v}}
	case []any:
		var out []argString
		for i, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, argString{name + "[" + strconv.Itoa(i) + "]", s})
			}
		}
		return out
	}
	return nil
}
