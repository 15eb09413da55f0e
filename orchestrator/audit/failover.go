package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
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

// Several writers.
//
// Several orchestrators of one deployment append to one stream, and the
// stream's order is the chain's: each record names the record it follows
// by its sequence and by its id (Nats-Expected-Last-Sequence and
// Nats-Expected-Last-Msg-Id, the id each record is stored with as
// Nats-Msg-Id), and the stream stores it only right after that record.
// The id matters: once another orchestrator's record took the place of
// one of ours, the sequence alone would let the record chained after ours
// be stored after theirs, with a prev that is not theirs.
//
// A record refused because another orchestrator's record was stored at
// its place, or at the place of the record it follows, is chained again:
// the log takes the chain up from the stream (once every try already sent
// is answered, as resync does), sets prev to the hash of the record now
// last, and sends it again. The records published after it, which were
// chained to it, are refused too, and each is chained again the same way
// when its turn comes, in the order their waiters see them refused: a
// record whose publisher waits for it before publishing the next keeps
// its place after that one. A checkpoint is not chained again: its count
// and signature would change; Checkpoint signs another.
//
// So the chain verifies whatever the number of orchestrators, and the
// records of one run, waited for in turn, stay in their order. The price
// is one more round trip for a record that loses its place, which is rare
// unless several orchestrators append at once all the time.

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
	// after a record was not stored (broken), or after another writer's
	// record took the place of one of ours.
	gen    uint64
	broken bool
	// displaced are the generations ended because another writer's
	// record took the place of one of ours: their records are chained
	// again rather than failed.
	displaced map[uint64]bool

	smu       sync.Mutex
	confirmed uint64        // the highest sequence known to be stored
	progress  chan struct{} // closed when confirmed grows
}

// try is what is needed to send a record again: the message, the sequence
// the record must follow, the chain's generation, when to stop trying and
// how long to wait before the next try.
type try struct {
	l   *Log
	ack jetstream.PubAckFuture
	// sent is when the record was handed to the stream.
	sent time.Time
	msg  *nats.Msg
	// id is the record's; prevID that of the record it follows ("" when
	// that one has none); body the record without prev, or nil for a
	// checkpoint (see send).
	id, prevID string
	body       []byte
	seq, gen   uint64
	deadline   time.Time
	backoff    time.Duration
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
			var end bool
			if waitFor, end, err = p.misplaced(ctx, err); end {
				return err
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
		if l.gen != p.gen && l.displaced[p.gen] {
			l.mu.Unlock()
			return p.rechain(ctx)
		}
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

// misplaced reads what a try refused for the stream's last sequence
// means: either the record before this one is not stored yet (wait for
// it), or this one is, by an earlier try (errStored), or another took its
// place or the place of the record before it (chained again). With end
// false, the record is to be tried again after waitFor is stored, or err
// is what reading the stream failed with.
func (p *Pending) misplaced(ctx context.Context, err error) (waitFor uint64, end bool, _ error) {
	waitFor = math.MaxUint64
	at, serr := p.l.recordAt(ctx, p.seq+1)
	switch {
	case serr != nil:
		return waitFor, false, serr
	case at == nil:
		displaced, derr := p.predecessorDisplaced(ctx)
		switch {
		case derr != nil:
			return waitFor, false, derr
		case displaced:
			return waitFor, true, p.rechain(ctx)
		default:
			return p.seq, false, err
		}
	case bytes.Equal(at, p.msg.Data):
		return waitFor, true, errStored
	default:
		return waitFor, true, p.rechain(ctx)
	}
}

var errStored = errors.New("stored")

// errDisplaced ends the append of a checkpoint whose place another
// orchestrator's record took.
var errDisplaced = errors.New("another orchestrator's record was stored in its place")

// predecessorDisplaced says whether the place of the record p follows
// holds a record of another writer: p can then never be stored where it
// was chained.
func (p *Pending) predecessorDisplaced(ctx context.Context) (bool, error) {
	if p.seq == 0 {
		return false, nil
	}
	at, err := p.l.recordAt(ctx, p.seq)
	if err != nil || at == nil {
		return false, err
	}
	rec, ok := decodeID(at)
	return !ok || rec != p.prevID, nil
}

// decodeID reads the id of a stored record.
func decodeID(data []byte) (string, bool) {
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &r) != nil || r.ID == "" {
		return "", false
	}
	return r.ID, true
}

// rechain chains p again after the last record of the stream, another
// orchestrator's record having taken its place or its predecessor's, and
// sends it: it returns nil once sent (p's try is the new one). The first
// record of a generation found displaced ends that generation and takes
// the chain up from the stream; the records chained after it, refused
// in turn, follow the new head. A checkpoint is not chained again.
func (p *Pending) rechain(ctx context.Context) error {
	l := p.l
	if p.body == nil {
		l.giveUp(p.gen)
		return errDisplaced
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen == p.gen {
		if l.displaced == nil {
			l.displaced = map[uint64]bool{}
		}
		l.displaced[l.gen] = true
		delete(l.displaced, l.gen-16) // long over
		l.broken = true
	} else if !l.displaced[p.gen] {
		return fmt.Errorf("a record before it was not stored")
	}
	if err := l.ready(); err != nil {
		return err
	}
	body := make([]byte, len(p.body))
	copy(body, p.body)
	if err := l.sendTry(&p.try, withPrev(body, l.last)); err != nil {
		return err
	}
	l.noteRecord("")
	return nil
}

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

// jsErrWrongLastMsgID is the stream's answer to a record whose
// Nats-Expected-Last-Msg-Id is not the id of its last record.
const jsErrWrongLastMsgID jetstream.ErrorCode = 10070

// wrongLastSequence says whether the stream refused a record because its
// last record is not the one the record follows, by sequence or by id.
func wrongLastSequence(err error) bool {
	var e *jetstream.APIError
	return errors.As(err, &e) && (e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		e.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant || e.ErrorCode == jsErrWrongLastMsgID)
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
	l.last, l.lastID, l.seq, l.n, l.uncovered, l.lastCheckpoint = "", "", state.LastSeq, state.Msgs, 0, nil
	// Records dropped before the first (retention.go) still count.
	dropped, err := firstCheckpointCount(ctx, st, state)
	if err != nil {
		return err
	}
	l.n += dropped
	m, err := st.GetLastMsgForSubject(ctx, l.subject)
	switch {
	case err == nil:
		l.last, l.seq, l.lastID = hash(m.Data), m.Sequence, m.Header.Get(jetstream.MsgIDHeader)
		// Another orchestrator may have appended since the stream's
		// state was read.
		if m.Sequence > state.LastSeq {
			l.n += m.Sequence - state.LastSeq
		}
		if rec, ok := decodeLine(m.Data); !ok || rec.Kind != KindCheckpoint {
			l.uncovered = 1 // how many does not matter
		}
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("read the last audit record: %w", err)
	}
	return nil
}
