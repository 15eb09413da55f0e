package wasm

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// pool keeps instances made ahead of time, each of which has served no
// call. A call takes one, or instantiates its own when none is ready; the
// instance is closed after the call and never returns to the pool. So
// the pool saves a call the instantiation (and a reactor's runtime
// initialization), never the isolation.
//
// An instance holds its slot until it is closed: the pool makes a
// replacement once a call is over, not while it runs, so that a call does
// not share the CPU with its own replacement.
type pool struct {
	m      *Module
	ready  chan *instance
	slots  chan struct{} // one per pooled instance, ready or in a call
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPool(m *Module, size int, first *instance) *pool {
	if size == 0 {
		size = DefaultPool
	}
	size = max(size, 0)
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{m: m, ready: make(chan *instance, max(size, 1)), slots: make(chan struct{}, size), ctx: ctx, cancel: cancel}
	if size == 0 {
		first.close()
		return p
	}
	p.slots <- struct{}{}
	first.release = p.release
	p.ready <- first
	for range min(size, runtime.GOMAXPROCS(0)) {
		p.wg.Add(1)
		go p.fill()
	}
	return p
}

// get returns an instance that has served no call: a ready one, or a new
// one made under ctx.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case inst := <-p.ready:
		return inst, nil
	default:
	}
	return p.m.instantiate(ctx)
}

// fill makes instances while there is a free slot. Failures back off, and
// are logged once per streak: the call that finds the pool empty
// instantiates for itself and reports its own error.
func (p *pool) fill() {
	defer p.wg.Done()
	backoff := 10 * time.Millisecond
	failing := false
	for {
		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		inst, err := p.m.instantiate(p.ctx)
		if err != nil {
			<-p.slots
			if p.ctx.Err() != nil {
				return
			}
			if !failing {
				p.m.log.Warn("making an instance ahead of time failed", "err", p.m.describe(inst, err))
				failing = true
			}
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		failing, backoff = false, 10*time.Millisecond
		inst.release = p.release
		p.ready <- inst
	}
}

// release frees the slot of a pooled instance that was closed.
func (p *pool) release() { <-p.slots }

// close stops the fillers and closes the instances that were never used.
func (p *pool) close() {
	p.cancel()
	p.wg.Wait()
	for {
		select {
		case inst := <-p.ready:
			inst.close()
		default:
			return
		}
	}
}
