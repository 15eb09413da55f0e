package ifc

import (
	"maps"
	"slices"
	"strings"
)

// Fields is the label of a structured value (a tool's output, an agent's
// answer): a Base label for the whole, and the label of each field below
// it that carries more, by dotted path ("flights.0.price"). A field's
// label is joined with the base wherever it is read; it never replaces it.
//
// What reading a path reveals is [Fields.At]: the base, the fields on the
// path and above it (which decide whether it exists and what it is), and
// the fields below it (which are part of it). [Fields.Shape] leaves out
// what lies below: the label of which elements a list has, not of their
// contents. [Fields.All] is the whole value's label. Each is a join, so a
// label read through Fields is never less than Base.
type Fields struct {
	Base   Label
	Fields map[string]Label // dotted path below the value -> its label
}

// All returns the label of the whole value: the base joined with every
// field's label.
func (f Fields) All() Label {
	return Join(append([]Label{f.Base}, slices.Collect(maps.Values(f.Fields))...)...)
}

// At returns the label of what reading path reveals: the base joined with
// the labels of fields that are the path, its ancestors or its
// descendants. An empty path reads the whole value.
func (f Fields) At(path []string) Label {
	if len(path) == 0 {
		return f.All()
	}
	p := strings.Join(path, ".")
	l := f.Base
	for field, fl := range f.Fields {
		if field == p || strings.HasPrefix(p, field+".") || strings.HasPrefix(field, p+".") {
			l = l.Join(fl)
		}
	}
	return l
}

// Shape returns the label of the value at path itself, without what lies
// below it: the base joined with the fields that are the path or its
// ancestors.
func (f Fields) Shape(path []string) Label {
	p := strings.Join(path, ".")
	l := f.Base
	for field, fl := range f.Fields {
		if field == p || strings.HasPrefix(p, field+".") {
			l = l.Join(fl)
		}
	}
	return l
}

// Nest records inner as the value of the field at prefix: the field gets
// inner's base, and each of inner's fields its label under the prefix.
func (f *Fields) Nest(prefix string, inner Fields) {
	if f.Fields == nil {
		f.Fields = map[string]Label{}
	}
	f.Fields[prefix] = inner.Base
	for path, l := range inner.Fields {
		f.Fields[prefix+"."+path] = l
	}
}
