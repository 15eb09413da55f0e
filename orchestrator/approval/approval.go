// Package approval is the record of a call held for a person: exactly what
// would be sent, how each argument is labeled, why policy held it, and
// the one table of states it may go through (pending, then approved,
// denied, superseded or cancelled; approved, then used, once). An
// approval is bound to the hash of its call (Hash) and lets through that
// call only. Lookalikes flags arguments that look like, but are not,
// values the person trusts. Holding a call and waiting for the answer is
// the engine's; what an approval is, and how it may change, is here.
package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// States of a held call.
const (
	Pending  = "pending"  // waiting for a person
	Approved = "approved" // approved, not yet delivered
	Denied   = "denied"
	Used     = "used" // approved and delivered: it cannot let another call through
	// Superseded: the call changed before it was answered (its
	// run resumed with other arguments) and was held again under a new id.
	Superseded = "superseded"
	// Cancelled: its run was cancelled before the call was made.
	Cancelled = "cancelled"
)

// Approval is a call held for a person, as kept in the approvals bucket:
// exactly what would be sent, how each argument is labeled and where it
// came from, and why policy held it.
//
// An approval is bound to Hash, the SHA-256 of the tool, the arguments,
// their labels and the run; it lets through one call with that hash, once.
type Approval struct {
	ID        string               `json:"id"`
	RunID     string               `json:"run_id"`
	Flow      string               `json:"flow"`
	Step      string               `json:"step"`
	Index     *int                 `json:"index,omitempty"`
	Tool      string               `json:"tool"`
	Args      map[string]any       `json:"args"`
	ArgLabels map[string]ifc.Label `json:"arg_labels,omitempty"`
	// Label is the call's context label: the join of its arguments' and
	// of any if condition it is under.
	Label   ifc.Label `json:"label"`
	Rules   []string  `json:"rules,omitempty"`
	Reasons []string  `json:"reasons,omitempty"`
	// Why says in plain words why the call is held (Explain); not part of
	// the hash.
	Why []string `json:"why,omitempty"`
	// Lookalikes flags arguments that look like, but are not, a registry
	// entry or a value approved before; not part of the hash.
	Lookalikes []schemas.Lookalike `json:"lookalikes,omitempty"`
	Hash       string              `json:"hash"`
	Status     string              `json:"status"`
	// Who answered, and when.
	Who     string     `json:"who,omitempty"`
	Created time.Time  `json:"created"`
	Decided *time.Time `json:"decided,omitempty"`
}

// WhyHeld says why the call is held, for a person: Why, or the policy's
// own words for a call held before Why was kept.
func (a *Approval) WhyHeld() []string {
	if len(a.Why) > 0 {
		return a.Why
	}
	return a.Reasons
}

// Sources lists, per argument, what influenced it: the page, the sender
// of the mail, the tool.
func (a *Approval) Sources() map[string][]string {
	out := make(map[string][]string, len(a.ArgLabels))
	for name, l := range a.ArgLabels {
		out[name] = l.Sources()
	}
	return out
}

// Hash binds an approval to one call: its idempotency key (which
// names the run, the step and the element), tool, arguments and labels, in a canonical encoding (encoding/json sorts map keys; labels
// encode canonically).
func Hash(call, tool string, args map[string]any, label ifc.Label, argLabels map[string]ifc.Label) string {
	b, _ := json.Marshal(struct {
		Call      string               `json:"call"`
		Tool      string               `json:"tool"`
		Args      map[string]any       `json:"args"`
		Label     ifc.Label            `json:"label"`
		ArgLabels map[string]ifc.Label `json:"arg_labels"`
	}{call, tool, args, label, argLabels})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ByStep groups held calls by the step that holds them (the elements of a
// for_each hold one each), in the order each step first appears in list,
// and each group in element order.
func ByStep(list []Approval) [][]Approval {
	at := map[string]int{}
	var out [][]Approval
	for _, a := range list {
		k := a.RunID + "/" + a.Step
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], a)
	}
	for _, g := range out {
		slices.SortStableFunc(g, func(a, b Approval) int { return index(a.Index) - index(b.Index) })
	}
	return out
}

// index orders a call without an element (a plain step) first.
func index(i *int) int {
	if i == nil {
		return -1
	}
	return *i
}
