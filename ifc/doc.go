// Package ifc holds Sluice's information-flow labels: the lattice every value
// is labeled in, and nothing else.
//
// A [Label] has three parts:
//   - integrity: [Trusted] or [Untrusted] (Untrusted < Trusted);
//   - secrecy: a set of tags such as "pii" or "payment";
//   - sources: the set of origins that influenced the value ("user",
//     "web:flights.example", "tool:calendar.list_events").
//
// [Join] gives the least upper bound: the least integrity, the union of
// secrecy and the union of sources. [Label.FlowsTo] holds when a value may
// reach a sink of a given [Clearance]: its secrecy is a subset of the
// clearance's and its integrity is at least the clearance's.
//
// # Invariants
//
// Labels only rise by themselves: [Join] never lowers one. Lowering is
// explicit and audited: [Endorse] (integrity to trusted) and [Declassify]
// (dropping secrecy tags) each require a [Reason], which only ifc/policy can
// build — for a named rule that matched one call, or for a person's approval
// of one held call — and the lowered label records it in its sources
// ("endorsed:<rule>", "declassified:<rule>", "approved:<who>").
// Labels are immutable values with sorted sets, so equal labels encode to
// equal JSON.
//
// # Structured values
//
// A tool's output may carry a label per field ([Fields]): reading a path
// reveals the base label joined with the fields on, above and below the
// path ([Fields.At]); the whole value's label joins them all
// ([Fields.All]). A field's label is always joined with the base, never put
// in its place.
//
// This package has no I/O, no goroutines and no logging, so that a reviewer
// can read all of it.
package ifc
