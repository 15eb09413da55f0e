package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
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

// batcher hands ended spans to the exporter in batches, off the calls'
// path, and drops what does not fit in its queue, as the SDK's batch span
// processor does; unlike it, ending a span only appends it to the batch
// under a lock: the exporting goroutine is woken once a batch is full or
// the delay has passed, not for every span (a wake-up per span is a
// scheduling round on the cores the calls run on, five of them a hop).
// The exporting goroutine converts each batch to OTLP (toOTLP) and
// uploads it.
type batcher struct {
	up   uploader
	cfg  batchConfig
	otlp *converter // the exporting goroutine's

	mu      sync.Mutex
	spans   []*span   // the batch being filled
	full    [][]*span // full batches waiting for the exporter
	held    int       // spans in spans and full: waiting, not yet given to the exporter
	dropped int       // spans dropped: the queue was full
	stopped bool

	wake  chan struct{}      // a batch is full (capacity 1: one wake-up is enough)
	flush chan chan struct{} // export everything now, then close the channel
	stop  chan struct{}
	done  chan struct{}
}

func newBatcher(up uploader, cfg batchConfig, resource ...attribute.KeyValue) *batcher {
	b := &batcher{up: up, cfg: cfg, otlp: newConverter(resource), spans: make([]*span, 0, cfg.batch),
		wake: make(chan struct{}, 1), flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// add adds an ended span to the batch, or drops it when the queue is full
// or the batcher stopped; a full batch wakes the exporting goroutine.
func (b *batcher) add(s *span) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	if b.held >= b.cfg.queue {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.spans = append(b.spans, s)
	b.held++
	wake := len(b.spans) >= b.cfg.batch
	if wake {
		b.full = append(b.full, b.spans)
		b.spans = make([]*span, 0, b.cfg.batch)
	}
	b.mu.Unlock()
	if wake {
		select {
		case b.wake <- struct{}{}:
		default: // already woken
		}
	}
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

// export exports the full batches and, when all is set, the one being
// filled too, each within the export timeout. As in the SDK's processor,
// the queue makes room for the spans taken for export at once.
func (b *batcher) export(all bool) {
	b.mu.Lock()
	batches := b.full
	b.full = nil
	if all && len(b.spans) > 0 {
		batches = append(batches, b.spans)
		b.spans = make([]*span, 0, b.cfg.batch)
	}
	for _, batch := range batches {
		b.held -= len(batch)
	}
	b.mu.Unlock()
	for _, batch := range batches {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.timeout)
		if err := b.up.UploadTraces(ctx, b.otlp.toOTLP(batch)); err != nil {
			otel.Handle(fmt.Errorf("traces export: %w", err))
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
	err = errors.Join(err, b.up.Stop(ctx))
	b.mu.Lock()
	dropped := b.dropped
	b.mu.Unlock()
	if dropped > 0 {
		err = errors.Join(err, fmt.Errorf("%d spans dropped: more than OTEL_BSP_MAX_QUEUE_SIZE (%d) were waiting to be exported", dropped, b.cfg.queue))
	}
	return err
}
