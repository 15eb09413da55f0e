package wasm

// Ready is the number of instances waiting in the pool.
func (m *Module) Ready() int { return len(m.pool.ready) }
