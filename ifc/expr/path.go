package expr

// Path returns the path a template reads when the template is exactly one
// expression that is nothing but that path, such as
// "${steps.inbox.output.messages}". Callers use it to follow the labels of
// the elements of such a value one by one; for any other template ok is
// false and the value carries the join of everything it reads.
func (t *Template) Path() (p Path, ok bool) {
	if !t.whole || len(t.parts) != 1 || t.parts[0].ast == nil {
		return nil, false
	}
	w := &walker{bound: map[string]int{}}
	r, dyn, ok := w.chain(t.parts[0].ast.Expr())
	if !ok || r.stopped || len(dyn) > 0 {
		return nil, false
	}
	return r.path, true
}
