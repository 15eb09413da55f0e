package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/ifc"
)

// Approval states.
const (
	ApprovalPending  = "pending"  // waiting for a person
	ApprovalApproved = "approved" // approved, not yet delivered
	ApprovalDenied   = "denied"
	ApprovalUsed     = "used" // approved and delivered: it cannot let another call through
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
	Hash    string    `json:"hash"`
	Status  string    `json:"status"`
	// Who answered, and when.
	Who     string     `json:"who,omitempty"`
	Created time.Time  `json:"created"`
	Decided *time.Time `json:"decided,omitempty"`
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

// callHash binds an approval to one call: its run, tool, arguments and
// labels, in a canonical encoding (encoding/json sorts map keys; labels
// encode canonically).
func callHash(run, tool string, args map[string]any, label ifc.Label, argLabels map[string]ifc.Label) string {
	b, _ := json.Marshal(struct {
		Run       string               `json:"run"`
		Tool      string               `json:"tool"`
		Args      map[string]any       `json:"args"`
		Label     ifc.Label            `json:"label"`
		ArgLabels map[string]ifc.Label `json:"arg_labels"`
	}{run, tool, args, label, argLabels})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
