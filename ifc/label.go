package ifc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc/internal/jsonappend"
	"github.com/sluicehq/sluice/ifc/internal/lower"
)

// Integrity says whether a value could have been influenced by an attacker.
// The order is Untrusted < Trusted; the zero value is Untrusted, so a value
// nobody labeled is treated as attacker-influenced.
type Integrity uint8

const (
	// Untrusted values may have been influenced by content the attacker
	// controls: web pages, inbound mail, third-party tools, model output
	// after reading any of those.
	Untrusted Integrity = iota
	// Trusted values come only from the user, the flow file, or tools whose
	// manifests declare trusted output, with nothing untrusted joined in.
	Trusted
)

// String returns "trusted" or "untrusted".
func (i Integrity) String() string {
	if i == Trusted {
		return "trusted"
	}
	return "untrusted"
}

// ParseIntegrity reads "trusted" or "untrusted".
func ParseIntegrity(s string) (Integrity, error) {
	switch s {
	case "trusted":
		return Trusted, nil
	case "untrusted":
		return Untrusted, nil
	}
	return Untrusted, fmt.Errorf("integrity %q: want trusted or untrusted", s)
}

// MarshalText implements encoding.TextMarshaler.
func (i Integrity) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (i *Integrity) UnmarshalText(b []byte) error {
	v, err := ParseIntegrity(string(b))
	if err != nil {
		return err
	}
	*i = v
	return nil
}

// Well-known sources. Other sources are built by [WebSource], [ToolSource]
// and friends so that their spelling lives in one place.
const (
	// SourceUser marks values the user gave to a run (flow inputs).
	SourceUser = "user"
	// SourceFlow marks constants written in a flow file.
	SourceFlow = "flow"
)

// WebSource is the source of content fetched from host (host or host:port).
func WebSource(host string) string { return "web:" + host }

// APISource is the source of an answer computed by a trusted API at host
// (host:port), such as a model's: see a manifest's trusted_network.
func APISource(host string) string { return "api:" + host }

// ToolSource is the source of a tool's output, e.g. "tool:payment.charge".
func ToolSource(tool string) string { return "tool:" + tool }

// WorkerSourcePrefix starts the sources that [WorkerSource] builds.
const WorkerSourcePrefix = "worker:"

// ReservedSource reports whether source is one that only the orchestrator
// gives: user, flow, approved:…, endorsed:…, declassified:…, and the
// sources it gives to a tool's output, a trusted model API's answer and a
// worker's claims (tool:…, api:…, worker:…). A worker that reports one in a reply's
// per-field labels does not get it: see [WorkerSource].
func ReservedSource(source string) bool {
	switch source {
	case SourceUser, SourceFlow:
		return true
	}
	for _, p := range []string{lower.ApprovedPrefix, lower.EndorsedPrefix, lower.DeclassifiedPrefix,
		"tool:", "api:", WorkerSourcePrefix} {
		if strings.HasPrefix(source, p) {
			return true
		}
	}
	return false
}

// WorkerSource namespaces a reserved source that worker reported, so that
// it cannot pass for the orchestrator's: "user" from the calendar worker
// is "worker:calendar:user".
func WorkerSource(worker, source string) string {
	return WorkerSourcePrefix + worker + ":" + source
}

// Label is the information-flow label of one value: its integrity, the
// secrecy tags it carries, and the sources that influenced it.
//
// A Label is an immutable value: its sets are kept sorted and never exposed
// for writing, and every method returns a new Label. Labels only rise
// through [Join]; only [Endorse] and [Declassify] lower one, and each needs
// a [Reason].
type Label struct {
	integrity Integrity
	secrecy   []string // sorted, unique
	sources   []string // sorted, unique
}

// TrustedFrom returns a trusted label with no secrecy and the given sources.
// With no sources it is the bottom of the lattice: Join(TrustedFrom(), x) == x.
func TrustedFrom(sources ...string) Label {
	return Label{integrity: Trusted, sources: set(sources)}
}

// UntrustedFrom returns an untrusted label with no secrecy and the given sources.
func UntrustedFrom(sources ...string) Label {
	return Label{integrity: Untrusted, sources: set(sources)}
}

// New builds a label from its three parts. An integrity other than
// [Trusted] and [Untrusted] is read as Untrusted.
func New(integrity Integrity, secrecy, sources []string) Label {
	return Label{integrity: valid(integrity), secrecy: set(secrecy), sources: set(sources)}
}

// valid returns i if it is Trusted, else Untrusted: the lattice has two
// integrities, and a value that is neither is not taken to be trusted.
func valid(i Integrity) Integrity {
	if i == Trusted {
		return Trusted
	}
	return Untrusted
}

// Integrity returns the label's integrity.
func (l Label) Integrity() Integrity { return l.integrity }

// Secrecy returns a copy of the label's secrecy tags, sorted.
func (l Label) Secrecy() []string { return slices.Clone(l.secrecy) }

// Sources returns a copy of the label's sources, sorted.
func (l Label) Sources() []string { return slices.Clone(l.sources) }

// HasSecrecy reports whether the label carries tag.
func (l Label) HasSecrecy(tag string) bool {
	_, ok := slices.BinarySearch(l.secrecy, tag)
	return ok
}

// WithSecrecy returns the label with tags added. Adding secrecy only raises
// a label, so it needs no endorsement.
func (l Label) WithSecrecy(tags ...string) Label {
	return Join(l, Label{integrity: Trusted, secrecy: set(tags)})
}

// WithSources returns the label with sources added.
func (l Label) WithSources(sources ...string) Label {
	return Join(l, TrustedFrom(sources...))
}

// Equal reports whether two labels are the same.
func (l Label) Equal(o Label) bool {
	return l.integrity == o.integrity && slices.Equal(l.secrecy, o.secrecy) && slices.Equal(l.sources, o.sources)
}

// Join returns the least upper bound of labels: the least integrity, the
// union of secrecy and the union of sources. Join() is TrustedFrom(), the
// bottom of the lattice: a constant from the flow file reads nothing.
func Join(labels ...Label) Label {
	out := Label{integrity: Trusted}
	// Most joins add nothing new to one of the labels (a call's label
	// and its arguments', read from the same inputs): that label's
	// secrecy or sources are the join's, shared, since a label is never
	// changed. Otherwise they are gathered and sorted.
	out.secrecy, out.sources = covering(labels, false), covering(labels, true)
	var sec, src []string
	for _, l := range labels {
		out.integrity = min(out.integrity, l.integrity)
		if out.secrecy == nil {
			sec = append(sec, l.secrecy...)
		}
		if out.sources == nil {
			src = append(src, l.sources...)
		}
	}
	if out.secrecy == nil {
		out.secrecy = set(sec)
	}
	if out.sources == nil {
		out.sources = set(src)
	}
	return out
}

// covering returns the longest of the labels' secrecy tags (their sources
// when sources is set) if it holds every label's, or nil: then, or when
// every label has none, Join gathers them.
func covering(labels []Label, sources bool) []string {
	of := func(l *Label) []string {
		if sources {
			return l.sources
		}
		return l.secrecy
	}
	var c []string
	for i := range labels {
		if s := of(&labels[i]); len(s) > len(c) {
			c = s
		}
	}
	if c == nil {
		return nil
	}
	for i := range labels {
		if !subset(of(&labels[i]), c) {
			return nil
		}
	}
	return c
}

// subset reports whether every element of a is in b, both sorted and
// unique.
func subset(a, b []string) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
		j++
	}
	return true
}

// Join returns Join(l, o).
func (l Label) Join(o Label) Label { return Join(l, o) }

// Clearance is what a sink accepts: values of at least this integrity that
// carry no secrecy tag outside this set. The zero Clearance is the
// strictest: trusted values with no secrecy only. Manifests build theirs
// with [NewClearance] or from JSON, where a missing integrity means trusted.
type Clearance struct {
	// admitsUntrusted is false in the zero value, so that a clearance
	// nobody filled in admits trusted values only.
	admitsUntrusted bool
	secrecy         []string
}

// NewClearance builds a clearance. Only [Untrusted] admits untrusted
// values; any other integrity, including one that is neither of the two,
// means trusted.
func NewClearance(integrity Integrity, secrecy ...string) Clearance {
	return Clearance{admitsUntrusted: integrity == Untrusted, secrecy: set(secrecy)}
}

// Integrity returns the least integrity the sink accepts.
func (c Clearance) Integrity() Integrity {
	if c.admitsUntrusted {
		return Untrusted
	}
	return Trusted
}

// Secrecy returns a copy of the secrecy tags the sink is cleared for.
func (c Clearance) Secrecy() []string { return slices.Clone(c.secrecy) }

// Equal reports whether two clearances are the same.
func (c Clearance) Equal(o Clearance) bool {
	return c.admitsUntrusted == o.admitsUntrusted && slices.Equal(c.secrecy, o.secrecy)
}

// FlowsTo reports whether a value labeled l may go to a sink with clearance
// c: l's secrecy is a subset of c's and l's integrity is at least c's.
func (l Label) FlowsTo(c Clearance) bool {
	if l.integrity != Trusted && !c.admitsUntrusted {
		return false
	}
	for _, t := range l.secrecy {
		if _, ok := slices.BinarySearch(c.secrecy, t); !ok {
			return false
		}
	}
	return true
}

// String renders the label compactly, e.g. "untrusted{pii}<web:a.example>".
func (l Label) String() string {
	var b strings.Builder
	b.WriteString(l.integrity.String())
	b.WriteString("{" + strings.Join(l.secrecy, ",") + "}")
	b.WriteString("<" + strings.Join(l.sources, ",") + ">")
	return b.String()
}

// MarshalJSON writes the canonical form
// {"integrity":"…","secrecy":[…],"sources":[…]}: both sets always present,
// sorted, so equal labels encode to equal bytes.
func (l Label) MarshalJSON() ([]byte, error) {
	return l.AppendJSON(make([]byte, 0, 64)), nil
}

// AppendJSON appends the canonical form of l to b, byte for byte as
// MarshalJSON writes it, for encoders of records that carry labels.
func (l Label) AppendJSON(b []byte) []byte {
	b = append(b, `{"integrity":"`...)
	b = append(b, l.integrity.String()...)
	b = append(b, `","secrecy":`...)
	b = jsonappend.Strings(b, l.secrecy)
	b = append(b, `,"sources":`...)
	b = jsonappend.Strings(b, l.sources)
	return append(b, '}')
}

// UnmarshalJSON reads the canonical form. A missing integrity is an error:
// a label that does not say it is trusted is not taken to be.
func (l *Label) UnmarshalJSON(b []byte) error {
	var raw struct {
		Integrity *Integrity `json:"integrity"`
		Secrecy   []string   `json:"secrecy"`
		Sources   []string   `json:"sources"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("label: %w", err)
	}
	if raw.Integrity == nil {
		return fmt.Errorf("label: integrity is required")
	}
	*l = New(*raw.Integrity, raw.Secrecy, raw.Sources)
	return nil
}

// MarshalJSON writes {"integrity":"…","secrecy":[…]}.
func (c Clearance) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Integrity Integrity `json:"integrity"`
		Secrecy   []string  `json:"secrecy"`
	}{c.Integrity(), nonNil(c.secrecy)})
}

// UnmarshalJSON reads {"integrity":"…","secrecy":[…]}. A missing integrity
// means trusted: a sink that does not say otherwise accepts trusted values only.
func (c *Clearance) UnmarshalJSON(b []byte) error {
	var raw struct {
		Integrity *Integrity `json:"integrity"`
		Secrecy   []string   `json:"secrecy"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("clearance: %w", err)
	}
	in := Trusted
	if raw.Integrity != nil {
		in = *raw.Integrity
	}
	*c = NewClearance(in, raw.Secrecy...)
	return nil
}

func set(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
