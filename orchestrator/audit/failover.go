package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
)

// How a record survives the loss of a NATS server.
//
// On a cluster, the server the orchestrator is connected to, or the one
// leading the stream, can die with records in flight. The connection moves
// to another server and the stream elects another leader (which takes up
// to about 10s), and meanwhile a try is lost, refused (no responders) or
// never answered. Such a try is sent again, the same bytes, until the
// stream stores the record or appendTimeout has passed.
//
// Sending again must not reorder the chain: a later record may reach the
// stream while an earlier one is lost. So every record carries the
// sequence the stream's last record must have for it to be stored
// (Nats-Expected-Last-Sequence), and the stream refuses it anywhere else.
// A record refused because the one before it is not stored yet is tried
// again; one whose place was taken by another record can never be stored.
// A try refused because an earlier try of the same record was stored is
// recognized by reading the record at its place.
//
// A record that is not stored within appendTimeout, or whose waiter gave
// up, fails: the step it belongs to fails with it. The records chained
// after it cannot be stored either, and fail too. The next Publish then
// takes the chain up from the last record the stream holds (resync), once
// every try already sent has been answered, so that the export verifies.

// appendTimeout bounds how long one record is tried: longer than the
// election of a new stream leader after a server dies.
const appendTimeout = 20 * time.Second

// Options of Open.
type Options struct {
	// Replicas of the stream: 1 on one server, 3 on a cluster of three or
	// more. Zero keeps the replicas of an existing stream (1 for a new
	// one), so that opening the log to read it changes nothing.
	Replicas int
	// Deployment names the stream (schemas.StoreName(Deployment,
	// "AUDIT")); "" for the default deployment's, StreamName.
	Deployment string
	// Signer, when set, signs checkpoints of the chain (checkpoint.go):
	// one on Open when records follow the last checkpoint, then in the
	// background, and on Checkpoint and Close.
	Signer ed25519.PrivateKey
	// CheckpointInterval bounds how long a record stays uncovered by a
	// checkpoint; default DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Fault, when set, reports that the state directory cannot be
	// written: a record waited for fails at once with that error, and so
	// does every record after it, instead of waiting for an answer the
	// server will not send.
	Fault *fault.Store
}

// chain is where the chain stands, for sending records again.
type chain struct {
	// seq is the stream sequence of the last record published: the next
	// must be stored right after it.
	seq uint64
	// gen counts the times the chain was taken up again from the stream
	// after a record was not stored (broken).
	gen    uint64
	broken bool

	smu       sync.Mutex
	confirmed uint64        // the highest sequence known to be stored
	progress  chan struct{} // closed when confirmed grows
}

// try is what is needed to send a record again: the message, the sequence
// the record must follow, the chain's generation, when to stop trying and
// how long to wait before the next try.
type try struct {
	l        *Log
	msg      *nats.Msg
	seq, gen uint64
	deadline time.Time
	backoff  time.Duration
}

// stored notes that the record at seq is stored, and wakes the records
// waiting for it.
func (c *chain) stored(seq uint64) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if seq > c.confirmed {
		c.confirmed = seq
		if c.progress != nil {
			close(c.progress)
			c.progress = nil
		}
	}
}

// waitStored waits until the record at seq is known to be stored (true), or
// until timeout fires (false).
func (c *chain) waitStored(ctx context.Context, seq uint64, timeout <-chan time.Time) (bool, error) {
	for {
		c.smu.Lock()
		if c.confirmed >= seq {
			c.smu.Unlock()
			return true, nil
		}
		if c.progress == nil {
			c.progress = make(chan struct{})
		}
		progress := c.progress
		c.smu.Unlock()
		select {
		case <-progress:
		case <-timeout:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// retry decides what the failed try err means. It returns nil when it has
// sent the record again (p.ack is the new try), errStored when the record
// turns out to be stored already, and otherwise the error that ends the
// append.
func (p *Pending) retry(ctx context.Context, err error) error {
	l := p.l
	for {
		// The record to wait for before trying again: none, unless the
		// one before this one is not stored yet.
		waitFor := uint64(math.MaxUint64)
		if wrongLastSequence(err) {
			// Either the record before this one is not stored yet, or
			// this one is, by an earlier try, or another took its place.
			at, serr := l.recordAt(ctx, p.seq+1)
			switch {
			case serr != nil:
				err = serr
			case at == nil:
				waitFor = p.seq
			case bytes.Equal(at, p.msg.Data):
				return errStored
			default:
				return fmt.Errorf("another record was stored in its place")
			}
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// No responders: the stream has no leader yet, or is gone.
			sctx, cancel := context.WithTimeout(ctx, ackTimeout)
			_, serr := l.js.Stream(sctx, l.stream)
			cancel()
			if errors.Is(serr, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("stream %s: %w", l.stream, serr)
			}
		}
		switch {
		case !transient(err):
			return err
		case time.Now().After(p.deadline):
			return fmt.Errorf("not stored within %s: %w", appendTimeout, err)
		}
		p.backoff = min(max(2*p.backoff, 50*time.Millisecond), time.Second)
		t := time.NewTimer(p.backoff)
		moved, werr := l.waitStored(ctx, waitFor, t.C)
		t.Stop()
		if werr != nil {
			return werr
		}
		if moved {
			// The record before it is stored: this one goes next.
			p.backoff = 0
		}
		// Under the lock, so that no try of a record chained before a
		// resync is sent after it.
		l.mu.Lock()
		if l.gen != p.gen {
			l.mu.Unlock()
			return fmt.Errorf("a record before it was not stored: %w", err)
		}
		ack, perr := l.js.PublishMsgAsync(p.msg, jetstream.WithRetryAttempts(0))
		l.mu.Unlock()
		if perr == nil {
			p.ack = ack
			return nil
		}
		err = perr
	}
}

var errStored = errors.New("stored")

// recordAt returns the record stored at seq, or nil when there is none. A
// request lost with a server is given up after ackTimeout.
func (l *Log) recordAt(ctx context.Context, seq uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, err
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func wrongLastSequence(err error) bool {
	var e *jetstream.APIError
	return errors.As(err, &e) && (e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// jsErrDuplicateInProcess is the stream's answer to a try of a message
// whose earlier try it is still storing.
const jsErrDuplicateInProcess jetstream.ErrorCode = 10158

// transient says whether another try of the same record may be stored:
// what jsretry.Transient says of any request (the connection moved to
// another server, the stream is electing a leader, an answer was lost),
// or the stream is still storing an earlier try, or the record before it
// is not stored yet, or the client's queue of unanswered publishes is full.
func transient(err error) bool {
	if fault.IsRefusal(err) {
		return false // the store is full: another try is refused too
	}
	var e *jetstream.APIError
	if errors.As(err, &e) && (e.ErrorCode == jsErrDuplicateInProcess || wrongLastSequence(err)) {
		return true
	}
	if jsretry.Transient(err) {
		return true
	}
	for _, t := range []error{nats.ErrReconnectBufExceeded, jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// giveUp says that a record of generation gen may not be stored: the next
// Publish takes the chain up from the stream again.
func (l *Log) giveUp(gen uint64) {
	l.mu.Lock()
	if l.gen == gen {
		l.broken = true
	}
	l.mu.Unlock()
}

// resync, with l.mu held, takes the chain up from the last record the
// stream holds, after a record was not stored. Tries of the records
// published before stop being sent, and every try already sent is
// answered or timed out first, so that none of them is stored after a
// record chained anew.
func (l *Log) resync() error {
	l.gen++
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	select {
	case <-l.js.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("resume the audit chain: records sent before are still unanswered")
	}
	if err := l.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("resume the audit chain: %w", err)
	}
	if err := l.sync(ctx); err != nil {
		return fmt.Errorf("resume the audit chain: %w", err)
	}
	l.broken = false
	return nil
}

// sync reads where the chain stands: the hash and the sequence of the last
// record stored.
func (l *Log) sync(ctx context.Context) error {
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return err
	}
	state := st.CachedInfo().State
	l.last, l.seq, l.n, l.uncovered, l.lastCheckpoint = "", state.LastSeq, state.Msgs, 0, nil
	// Records dropped before the first (retention.go) still count.
	dropped, err := firstCheckpointCount(ctx, st, state)
	if err != nil {
		return err
	}
	l.n += dropped
	m, err := st.GetLastMsgForSubject(ctx, l.subject)
	switch {
	case err == nil:
		l.last, l.seq = hash(m.Data), m.Sequence
		if rec, ok := decodeLine(m.Data); !ok || rec.Kind != KindCheckpoint {
			l.uncovered = 1 // how many does not matter
		}
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("read the last audit record: %w", err)
	}
	return nil
}
