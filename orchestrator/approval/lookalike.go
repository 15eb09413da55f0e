package approval

import (
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/schemas"
)

// maxLookalike bounds the strings compared: longer ones are texts, not
// names.
const maxLookalike = 320

// Lookalikes flags the string arguments of a call of tool that look like,
// but are not, an entry of one of registries or the same argument of an
// earlier call of the same tool a person approved (approved, the values of
// those calls; nil for none).
func Lookalikes(tool string, args map[string]any, registries map[string][]string, approved *ApprovedValues) []schemas.Lookalike {
	trusted := registered(registries)
	var out []schemas.Lookalike
	for _, name := range slices.Sorted(maps.Keys(args)) {
		for _, s := range stringsOf(name, args[name]) {
			if len(s.value) > maxLookalike {
				continue
			}
			skel := display.Skeleton(s.value)
			cands := slices.Clone(trusted)
			for _, v := range approved.like(name, skel) {
				cands = append(cands, known{v, skel, "approved before (" + tool + " " + name + ")"})
			}
			out = append(out, resembles(s, skel, cands)...)
		}
	}
	return out
}

// known is a value a person trusts, its skeleton, and where it is kept.
type known struct{ value, skel, where string }

// registered lists the entries of every registry, by registry name.
func registered(registries map[string][]string) []known {
	var trusted []known
	for _, name := range slices.Sorted(maps.Keys(registries)) {
		for _, v := range registries[name] {
			if len(v) <= maxLookalike {
				trusted = append(trusted, known{v, display.Skeleton(v), "registry " + name})
			}
		}
	}
	return trusted
}

// ApprovedValues holds what a new held call of one tool is compared with for
// lookalikes: the strings of each argument of the calls of the tool a
// person approved (the elements of a list too; none longer than the
// strings compared), each value once, by its skeleton. It grows with the
// distinct values people approved, not with the approvals, and a held
// call's string is compared with the values of its skeleton alone, not
// with every value: with thousands of approved calls, each new hold
// computed the skeleton of every one of them. Values are only ever added
// (an approval is approved, then used): one rewritten by hand afterwards
// still counts, which can only flag more. Safe for concurrent use.
type ApprovedValues struct {
	mu sync.RWMutex
	// args holds, by argument and skeleton, the values, sorted.
	args map[string]map[string][]string
}

// Add adds the values of the arguments of a call a person approved.
func (a *ApprovedValues) Add(args map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, v := range args {
		for _, s := range stringsOf(name, v) {
			if len(s.value) <= maxLookalike {
				a.add(name, s.value)
			}
		}
	}
}

// add adds value to argument name's values; a.mu is held.
func (a *ApprovedValues) add(name, value string) {
	if a.args == nil {
		a.args = map[string]map[string][]string{}
	}
	bySkel := a.args[name]
	if bySkel == nil {
		bySkel = map[string][]string{}
		a.args[name] = bySkel
	}
	skel := display.Skeleton(value)
	vs := bySkel[skel]
	i, found := slices.BinarySearch(vs, value)
	if found {
		return
	}
	// A new slice: a reader may hold the one before.
	bySkel[skel] = slices.Insert(slices.Clip(vs), i, value)
}

// like lists the values of argument name with skeleton skel.
func (a *ApprovedValues) like(name, skel string) []string {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.args[name][skel]
}

// Values lists the values of argument name, sorted.
func (a *ApprovedValues) Values(name string) []string {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []string
	for _, vs := range a.args[name] {
		out = append(out, vs...)
	}
	slices.Sort(out)
	return out
}

// Len is how many values a holds, over every argument.
func (a *ApprovedValues) Len() int {
	if a == nil {
		return 0
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	n := 0
	for _, bySkel := range a.args {
		for _, vs := range bySkel {
			n += len(vs)
		}
	}
	return n
}

// resembles flags each candidate s, whose skeleton is skel, looks like
// without being it, once.
func resembles(s argString, skel string, cands []known) []schemas.Lookalike {
	var out []schemas.Lookalike
	seen := map[string]bool{}
	for _, k := range cands {
		if seen[k.value] || k.value == s.value || k.skel != skel {
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
