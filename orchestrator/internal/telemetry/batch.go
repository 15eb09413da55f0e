package telemetry

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// batchConfig is how spans are batched on their way to the exporter: the
// OpenTelemetry batch span processor's variables, with its defaults.
type batchConfig struct {
	delay   time.Duration // OTEL_BSP_SCHEDULE_DELAY: what is held goes at least this often
	timeout time.Duration // OTEL_BSP_EXPORT_TIMEOUT: one export's limit
	queue   int           // OTEL_BSP_MAX_QUEUE_SIZE: spans held at most; more are dropped
	batch   int           // OTEL_BSP_MAX_EXPORT_BATCH_SIZE: spans in one export
}

// readBatchConfig reads the OTEL_BSP_* variables, in milliseconds and
// spans, refusing a value that is not a whole number above 0.
func readBatchConfig(getenv func(string) string) (batchConfig, error) {
	c := batchConfig{delay: 5 * time.Second, timeout: 30 * time.Second, queue: 2048, batch: 512}
	for _, v := range []struct {
		name string
		set  func(int)
	}{
		{"OTEL_BSP_SCHEDULE_DELAY", func(n int) { c.delay = time.Duration(n) * time.Millisecond }},
		{"OTEL_BSP_EXPORT_TIMEOUT", func(n int) { c.timeout = time.Duration(n) * time.Millisecond }},
		{"OTEL_BSP_MAX_QUEUE_SIZE", func(n int) { c.queue = n }},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", func(n int) { c.batch = n }},
	} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("%s=%s: want a whole number above 0", v.name, s)
		}
		v.set(n)
	}
	// A batch is never larger than the queue, as the specification says.
	c.batch = min(c.batch, c.queue)
	return c, nil
}

// batcher is the span processor of an exporting provider. Like the SDK's
// batch span processor, it hands spans to the exporter in batches, off the
// calls' path, and drops what does not fit in its queue; unlike it, ending
// a span only appends it to the batch under a lock: the exporting
// goroutine is woken once a batch is full or the delay has passed, not
// for every span (a wake-up per span is a scheduling round on the cores
// the calls run on, five of them a hop).
//
// End (trace.go) goes further: it takes a span's end time on the call's
// path and leaves the rest of its end to the exporting goroutine
// (endLater).
type batcher struct {
	exp sdktrace.SpanExporter
	cfg batchConfig

	mu       sync.Mutex
	spans    []sdktrace.ReadOnlySpan   // the batch being filled
	full     [][]sdktrace.ReadOnlySpan // full batches waiting for the exporter
	held     int                       // spans in spans and full: waiting, not yet given to the exporter
	ending   []ending                  // spans whose end was taken, to be ended by the exporting goroutine
	spare    []ending                  // the last ending slice, emptied, for reuse
	draining bool                      // the exporting goroutine is ending spans: they are taken even once stopped
	opts     []trace.SpanEndOption     // the exporting goroutine's, for End's options
	dropped  int                       // spans dropped: the queue was full
	stopped  bool

	wake  chan struct{}      // a batch is full (capacity 1: one wake-up is enough)
	flush chan chan struct{} // export everything now, then close the channel
	stop  chan struct{}
	done  chan struct{}
}

func newBatcher(exp sdktrace.SpanExporter, cfg batchConfig) *batcher {
	b := &batcher{exp: exp, cfg: cfg, spans: make([]sdktrace.ReadOnlySpan, 0, cfg.batch),
		ending: make([]ending, 0, cfg.batch), spare: make([]ending, 0, cfg.batch), opts: make([]trace.SpanEndOption, 1),
		wake: make(chan struct{}, 1), flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// OnStart does nothing: a span is exported once it ended.
func (*batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd adds an ended span to the batch, or drops it when the queue is
// full; a full batch wakes the exporting goroutine.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if b.stopped && !b.draining {
		b.mu.Unlock()
		return
	}
	if b.held+len(b.ending) >= b.cfg.queue {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.spans = append(b.spans, s)
	b.held++
	wake := len(b.spans) >= b.cfg.batch
	if wake {
		b.full = append(b.full, b.spans)
		b.spans = make([]sdktrace.ReadOnlySpan, 0, b.cfg.batch)
	}
	b.mu.Unlock()
	if wake {
		select {
		case b.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// ending is a span whose end time was taken on the call's path, its
// attributes and status to be set, and its End called, by the exporting
// goroutine.
type ending struct {
	span   trace.Span
	at     time.Time
	attrs  []attribute.KeyValue
	failed bool
}

// endLater takes span's end at time at, with attrs and, when failed, the
// status error, to be set and ended by the exporting goroutine before it
// exports: on the call's path, ending a span is an append under a lock;
// what the SDK does when a span ends (its attributes normalised, its
// snapshot for the processors) is done off it, its end time the one taken
// here. It says false, ending nothing, once the batcher is stopped: the
// caller ends the span itself. A span that finds the queue full is
// dropped (never ended), as it would be at its end.
func (b *batcher) endLater(span trace.Span, at time.Time, attrs []attribute.KeyValue, failed bool) bool {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return false
	}
	if b.held+len(b.ending) >= b.cfg.queue {
		b.dropped++
		b.mu.Unlock()
		return true
	}
	b.ending = append(b.ending, ending{span: span, at: at, attrs: attrs, failed: failed})
	wake := len(b.ending)+len(b.spans) >= b.cfg.batch
	b.mu.Unlock()
	if wake {
		select {
		case b.wake <- struct{}{}:
		default: // already woken
		}
	}
	return true
}

// yieldEvery is how many spans endTaken ends between yields to other
// goroutines.
const yieldEvery = 32

// endTaken ends the spans endLater took: each goes to the processors, this
// one among them (OnEnd), ended at the time taken.
func (b *batcher) endTaken() {
	b.mu.Lock()
	es := b.ending
	if len(es) == 0 {
		b.mu.Unlock()
		return
	}
	b.ending, b.spare = b.spare, nil
	if b.ending == nil {
		b.ending = make([]ending, 0, b.cfg.batch)
	}
	b.draining = true
	b.mu.Unlock()
	for i := range es {
		endNow(es[i].span, es[i].at, es[i].attrs, es[i].failed, b.opts)
		es[i] = ending{}
		if i%yieldEvery == yieldEvery-1 {
			// A batch of ends is about a millisecond of work on one
			// of the process's two or so Ps: the goroutines of a call
			// that woke meanwhile run first, rather than wait for it.
			runtime.Gosched()
		}
	}
	b.mu.Lock()
	b.draining = false
	b.spare = es[:0]
	b.mu.Unlock()
}

func (b *batcher) run() {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.delay)
	defer tick.Stop()
	for {
		select {
		case <-b.wake:
			b.export(false)
		case <-tick.C:
			b.export(true)
		case ack := <-b.flush:
			b.export(true)
			close(ack)
		case <-b.stop:
			b.export(true)
			return
		}
	}
}

// export ends the spans endLater took, then exports the full batches and,
// when all is set, the one being filled too, each within the export
// timeout. As in the SDK's processor, the queue makes room for the spans
// taken for export at once.
func (b *batcher) export(all bool) {
	b.endTaken()
	b.mu.Lock()
	batches := b.full
	b.full = nil
	if all && len(b.spans) > 0 {
		batches = append(batches, b.spans)
		b.spans = make([]sdktrace.ReadOnlySpan, 0, b.cfg.batch)
	}
	for _, batch := range batches {
		b.held -= len(batch)
	}
	b.mu.Unlock()
	for _, batch := range batches {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.timeout)
		if err := b.exp.ExportSpans(ctx, batch); err != nil {
			otel.Handle(err)
		}
		cancel()
	}
}

// ForceFlush exports every span held, waiting at most until ctx is done.
func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports every span held and stops the exporter, waiting at most
// until ctx is done. Spans that end after it are dropped. It says how many
// spans were dropped, if any were.
func (b *batcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.stopped = true
	b.mu.Unlock()
	close(b.stop)
	var err error
	select {
	case <-b.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	err = errors.Join(err, b.exp.Shutdown(ctx))
	b.mu.Lock()
	dropped := b.dropped
	b.mu.Unlock()
	if dropped > 0 {
		err = errors.Join(err, fmt.Errorf("%d spans dropped: more than OTEL_BSP_MAX_QUEUE_SIZE (%d) were waiting to be exported", dropped, b.cfg.queue))
	}
	return err
}
