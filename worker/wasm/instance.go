package wasm

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// instance is one instantiated module that has served no call yet. It is
// used for exactly one call and then closed.
type instance struct {
	mod   api.Module
	entry api.Function // sluice_call (reactor) or _start (command)
	io    *callIO
	mem   *linearMemory
	// release, for an instance made by the pool, gives its slot back.
	release func()
}

func (i *instance) close() {
	_ = i.mod.Close(context.Background())
	if i.release != nil {
		i.release()
	}
}

// callIO is the stdin, stdout and stderr of one instance. The envelope is
// put on stdin just before the call; stdout and stderr are bounded.
type callIO struct {
	stdin  bytes.Reader
	stdout boundedWriter
	stderr boundedWriter
}

func newCallIO(maxOutput, maxStderr int) *callIO {
	c := &callIO{}
	c.stdout.limit = maxOutput
	c.stdout.failOnOverflow = true
	c.stderr.limit = maxStderr
	return c
}

// errOverflow is what a write past stdout's limit returns to the guest.
var errOverflow = errors.New("output limit reached")

// boundedWriter keeps up to limit bytes. Past the limit it either fails
// the write and calls onOverflow (stdout: the call is stopped), or drops
// the bytes and counts them (stderr).
type boundedWriter struct {
	buf            bytes.Buffer
	limit          int
	failOnOverflow bool
	dropped        int64
	overflowed     atomic.Bool
	onOverflow     func()
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	room := w.limit - w.buf.Len()
	if len(p) <= room {
		return w.buf.Write(p)
	}
	if room > 0 {
		w.buf.Write(p[:room])
	}
	w.dropped += int64(len(p) - max(room, 0))
	if w.failOnOverflow {
		if !w.overflowed.Swap(true) && w.onOverflow != nil {
			w.onOverflow()
		}
		return max(room, 0), errOverflow
	}
	return len(p), nil
}

func (w *boundedWriter) reset() {
	w.buf.Reset()
	w.dropped = 0
	w.overflowed.Store(false)
	w.onOverflow = nil
}

// linearMemory backs an instance's memory and enforces the manifest's
// memory limit itself, so that a refused growth is known to be the limit
// (the guest only sees memory.grow fail, and a Go guest then dies with a
// generic trap).
type linearMemory struct {
	buf   []byte
	limit uint64
	hit   atomic.Bool
}

var _ experimental.LinearMemory = (*linearMemory)(nil)

func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.hit.Store(true)
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		// Growth only: bytes past the old length were never written.
		m.buf = m.buf[:size]
		return m.buf
	}
	m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	return m.buf
}

func (m *linearMemory) Free() { m.buf = nil }
