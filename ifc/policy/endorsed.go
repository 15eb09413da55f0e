package policy

import (
	"fmt"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/internal/lower"
)

// EndorsedValue returns the label of an argument whose value a person
// endorsed, when they approved a held call, for later calls of the same
// run (orchestrator/approval.Endorsement): l raised to trusted, its
// secrecy unchanged, recorded as endorsed:<who>. The engine calls it only
// for a value whose hash, run and tool the endorsement names, and the
// lowered label is in the decision record of the call. It fails with
// [ErrNotHeld] without the name of who endorsed it.
func EndorsedValue(l ifc.Label, who string) (ifc.Label, error) {
	r := lower.ValueEndorsedBy(who)
	if r.Kind() == lower.None {
		return l, fmt.Errorf("%w: an endorsement needs the name of who gave it", ErrNotHeld)
	}
	return ifc.Endorse(l, r)
}
