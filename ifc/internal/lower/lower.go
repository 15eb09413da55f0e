// Package lower builds the reasons that [ifc.Endorse] and [ifc.Declassify]
// require. It is internal to ifc: only ifc and its subpackages can import
// it, and of those only ifc/policy builds reasons — for a named rule whose
// action is endorse or declassify, and for a person's approval of one held
// call. No other package of Sluice can build a reason, so no other package
// can lower a label.
package lower

import (
	"slices"
	"strings"
)

// Kind is what a reason allows.
type Kind uint8

const (
	// None is the zero reason's kind: it allows nothing.
	None Kind = iota
	// Endorse raises integrity to trusted.
	Endorse
	// Declassify drops secrecy tags.
	Declassify
)

// Prefixes of the source a lowered label records.
const (
	EndorsedPrefix     = "endorsed:"
	DeclassifiedPrefix = "declassified:"
	ApprovedPrefix     = "approved:"
)

// Reason is why a label may be lowered for one call: a named rule or a
// person's approval. The zero Reason allows nothing.
type Reason struct {
	kind   Kind
	source string   // recorded in the lowered label's sources
	tags   []string // the secrecy tags a declassification drops, sorted
}

// EndorsedBy is the reason of an endorse rule named rule.
func EndorsedBy(rule string) Reason {
	if rule == "" {
		return Reason{}
	}
	return Reason{kind: Endorse, source: EndorsedPrefix + rule}
}

// DeclassifiedBy is the reason of a declassify rule named rule that drops
// tags.
func DeclassifiedBy(rule string, tags []string) Reason {
	if rule == "" || len(tags) == 0 {
		return Reason{}
	}
	t := slices.Clone(tags)
	slices.Sort(t)
	return Reason{kind: Declassify, source: DeclassifiedPrefix + rule, tags: slices.Compact(t)}
}

// ApprovedBy is the reason of a person who approved one held call: an
// endorsement recorded as approved:<who>.
func ApprovedBy(who string) Reason {
	if strings.TrimSpace(who) == "" {
		return Reason{}
	}
	return Reason{kind: Endorse, source: ApprovedPrefix + who}
}

// ValueEndorsedBy is the reason of a person who, approving a held call,
// endorsed the value of one of its arguments for the rest of its run: an
// endorsement recorded as endorsed:<who>.
func ValueEndorsedBy(who string) Reason {
	if strings.TrimSpace(who) == "" {
		return Reason{}
	}
	return Reason{kind: Endorse, source: EndorsedPrefix + who}
}

// ApprovedDeclassifies is the reason of a person who approved one held
// call whose secrecy the tool is not cleared for: a declassification of
// tags recorded as approved:<who>.
func ApprovedDeclassifies(who string, tags []string) Reason {
	if strings.TrimSpace(who) == "" || len(tags) == 0 {
		return Reason{}
	}
	t := slices.Clone(tags)
	slices.Sort(t)
	return Reason{kind: Declassify, source: ApprovedPrefix + who, tags: slices.Compact(t)}
}

// Kind returns what the reason allows.
func (r Reason) Kind() Kind { return r.kind }

// Source returns what the lowered label records in its sources.
func (r Reason) Source() string { return r.source }

// Tags returns a copy of the tags a declassification drops.
func (r Reason) Tags() []string { return slices.Clone(r.tags) }
