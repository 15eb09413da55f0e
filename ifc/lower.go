package ifc

import (
	"fmt"
	"slices"

	"github.com/sluicehq/sluice/ifc/internal/lower"
)

// Reason is why a label may be lowered for one call: a policy rule whose
// action is endorse or declassify, or a person's approval of one held call.
//
// Its constructors live in an internal package of ifc, which only ifc and
// its subpackages can import, and of those only ifc/policy builds reasons:
// for a rule, when the rule matched a call (see policy.Set.Decide), and for
// a person, from the decision that held the call (see
// policy.Decision.Approve), which the engine records in the audit log. Any
// other package can hold and pass a Reason but cannot make one; the zero
// Reason allows nothing. So an unaudited lowering cannot be written outside
// ifc/policy.
type Reason = lower.Reason

// Endorse returns l raised to [Trusted], with the reason's source
// ("endorsed:<rule>" or "approved:<who>") added to its sources. Its secrecy
// is unchanged. It fails with [ErrReason] unless r is an endorsement.
func Endorse(l Label, r Reason) (Label, error) {
	if r.Kind() != lower.Endorse || r.Source() == "" {
		return l, fmt.Errorf("endorse: %w", ErrReason)
	}
	return Label{integrity: Trusted, secrecy: l.secrecy, sources: insert(l.sources, r.Source())}, nil
}

// Declassify returns l without the secrecy tags r names, with the reason's
// source ("declassified:<rule>") added to its sources. Its integrity is
// unchanged. It fails with [ErrReason] unless r is a declassification.
func Declassify(l Label, r Reason) (Label, error) {
	if r.Kind() != lower.Declassify || r.Source() == "" {
		return l, fmt.Errorf("declassify: %w", ErrReason)
	}
	drop := r.Tags()
	var sec []string
	for _, t := range l.secrecy {
		if !slices.Contains(drop, t) {
			sec = append(sec, t)
		}
	}
	return Label{integrity: l.integrity, secrecy: sec, sources: insert(l.sources, r.Source())}, nil
}

// insert returns a new sorted set: the sorted set s with x. s is not
// changed; labels share their sets.
func insert(s []string, x string) []string {
	i, found := slices.BinarySearch(s, x)
	if found {
		return s
	}
	out := make([]string, 0, len(s)+1)
	out = append(out, s[:i]...)
	out = append(out, x)
	return append(out, s[i:]...)
}
