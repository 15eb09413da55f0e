package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endorsement is what a person endorsed when they approved a held call:
// the values of some of its arguments, for the rest of that run, for the
// tools they chose. A later call of the run to one of those tools that
// passes exactly one of those values (the same SHA-256 of its canonical
// JSON) has that argument labeled trusted. It is bound to the run, the
// tools and the hashes, and to nothing else: not to another run, another
// tool, or a value that differs by one byte.
type Endorsement struct {
	ID    string `json:"id"`
	RunID string `json:"run_id"`
	// Call is the idempotency key of the held call it was given with,
	// which goes ahead on its own approval, not on the endorsement.
	Call string `json:"call"`
	// Tools are the tools the endorsed values are trusted for.
	Tools []string `json:"tools"`
	// Values are the SHA-256 (hex) of each endorsed value's canonical
	// JSON, by the argument of the held call it was endorsed from.
	Values map[string]string `json:"values"`
	// Who endorsed them, when, and the held call they answered.
	Who      string    `json:"who"`
	Created  time.Time `json:"created"`
	Approval string    `json:"approval"`
}

// EndorseScope is what a person picks when they endorse values: the
// arguments of the held call whose values they endorse, and the tools
// they are endorsed for (the held call's tool when empty).
type EndorseScope struct {
	Args  []string `json:"args"`
	Tools []string `json:"tools,omitempty"`
}

// ValueHash is the SHA-256 (hex) of v's canonical JSON (encoding/json,
// which sorts map keys).
func ValueHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Endorse makes the endorsement of the values of the arguments sc names
// of the held call a, for the tools sc names.
func Endorse(id string, a *Approval, sc EndorseScope, who string, now time.Time) (*Endorsement, error) {
	if len(sc.Args) == 0 {
		return nil, errors.New("endorse: name at least one argument whose value to endorse (--endorse payee)")
	}
	e := &Endorsement{ID: id, RunID: a.RunID, Call: CallKey(a), Tools: slices.Clone(sc.Tools), Values: map[string]string{},
		Who: who, Created: now, Approval: a.ID}
	if len(e.Tools) == 0 {
		e.Tools = []string{a.Tool}
	}
	slices.Sort(e.Tools)
	e.Tools = slices.Compact(e.Tools)
	for _, name := range sc.Args {
		v, ok := a.Args[name]
		if !ok {
			return nil, fmt.Errorf("endorse: the held call has no argument %q (it has %s)", name, strings.Join(slices.Sorted(maps.Keys(a.Args)), ", "))
		}
		h := ValueHash(v)
		if h == "" {
			return nil, fmt.Errorf("endorse: the value of %q cannot be hashed", name)
		}
		e.Values[name] = h
	}
	for _, t := range e.Tools {
		if strings.TrimSpace(t) == "" {
			return nil, errors.New("endorse: a tool name is empty (--for pay.send,pay.refund)")
		}
	}
	return e, nil
}

// CallKey is the idempotency key of the held call a: its run, step and
// element.
func CallKey(a *Approval) string {
	k := a.RunID + "/" + a.Step
	if a.Index != nil {
		k += "/" + strconv.Itoa(*a.Index)
	}
	return k
}

// Covers reports whether the endorsement makes v trusted as an argument
// of the call idem of tool in run: the same run, one of its tools, and
// exactly one of its values; not the call it was given with.
func (e *Endorsement) Covers(run, idem, tool string, v any) bool {
	if e.RunID != run || e.Call == idem {
		return false
	}
	if !slices.Contains(e.Tools, tool) {
		return false
	}
	h := ValueHash(v)
	for _, x := range e.Values {
		if x == h {
			return true
		}
	}
	return false
}

// Describe is the endorsement in words, for a person and the audit log.
func (e *Endorsement) Describe() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(e.Values)) {
		parts = append(parts, name+" (sha256:"+e.Values[name]+")")
	}
	return "the values of " + strings.Join(parts, " and ") + " for " + strings.Join(e.Tools, ", ") + " in run " + e.RunID
}
