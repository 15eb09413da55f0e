package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsretry"
)

// Retention: how the head of the log is dropped without breaking what
// Verify checks.
//
// JetStream's own limits (max age, max bytes) drop single records at the
// head whenever they like, so the log would start with any record, and an
// export of it could not be told from one whose head was cut off. So the
// stream has no limits, and the orchestrator drops the head itself
// (Retain): it signs a checkpoint at the end, picks a checkpoint to keep
// as the first record, and drops every record strictly before it. The
// log then always starts with a signed checkpoint, whose count says how
// many records precede it and whose prev is the hash of the last of them:
// Verify accepts an export that starts there, and still fails on anything
// changed after it.
//
// The stream denies purges (deny_purge, which the server never lets be
// turned off again), so the head is dropped the one way left: with every
// record sent stored and the chain's lock held, the stream is given a
// limit of exactly the records from the checkpoint on, which drops those
// before it, and the limit is taken away again at once. Nothing is
// published in between: the lock orders every record of the log.
//
// A drop is itself recorded: a record of kind retention, after the
// checkpoint kept, with how many records were dropped (Count), the id of
// the checkpoint the log now starts at (Checkpoint) and why (Reasons).

// KindRetention records a drop of the log's head (retention.go).
const KindRetention = "retention"

// Retention is how much of the log to keep: records older than MaxAge,
// and the oldest records while the stream holds more than MaxSize bytes,
// are dropped, up to a checkpoint. Zero: no limit.
type Retention struct {
	MaxAge  time.Duration
	MaxSize int64
}

// Dropped is what one Retain dropped.
type Dropped struct {
	// Records dropped, and the stream sequence and id of the checkpoint
	// the log now starts at.
	Records    uint64
	Seq        uint64
	Checkpoint string
	// Reason says which limit was passed.
	Reason string
}

// Retain drops the records at the head of the log that r says not to
// keep, strictly before a signed checkpoint, and records the drop. It
// returns what it dropped: nothing (Records 0) when the log is within its
// limits, or when no checkpoint lies past the records to drop. A record
// younger than MaxAge is never dropped for its age; to get under MaxSize,
// records are dropped up to the first checkpoint after enough bytes.
func (l *Log) Retain(ctx context.Context, r Retention, now time.Time) (Dropped, error) {
	var d Dropped
	if r.MaxAge <= 0 && r.MaxSize <= 0 {
		return d, nil
	}
	if l.signer == nil {
		return d, errors.New("audit retention: no signing key")
	}
	state, tooOld, excess, err := l.overLimits(ctx, r, now)
	if err != nil || (!tooOld && excess == 0) {
		return d, err
	}
	cutoff := now.Add(-r.MaxAge)
	// The log ends with a checkpoint, so there is one to cut at.
	end, err := l.Checkpoint(ctx)
	if err != nil {
		return d, fmt.Errorf("audit retention: %w", err)
	}
	cut, reason, err := l.findCut(ctx, state.FirstSeq, end, r, cutoff, tooOld, excess)
	if err != nil || cut == 0 {
		return d, err
	}
	id, err := l.dropBefore(ctx, cut)
	if err != nil {
		return d, fmt.Errorf("audit retention: %w", err)
	}
	d = Dropped{Records: cut - state.FirstSeq, Seq: cut, Checkpoint: id, Reason: reason}
	rec := Record{Kind: KindRetention, Count: d.Records, Checkpoint: id, Reasons: []string{reason}}
	if err := l.Append(ctx, rec); err != nil {
		return d, fmt.Errorf("audit retention: record the drop: %w", err)
	}
	return d, nil
}

// overLimits reads the stream's state and reports whether its first
// record is older than r.MaxAge and by how many bytes it is over
// r.MaxSize.
func (l *Log) overLimits(ctx context.Context, r Retention, now time.Time) (state jetstream.StreamState, tooOld bool, excess int64, err error) {
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return state, false, 0, fmt.Errorf("audit retention: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return state, false, 0, fmt.Errorf("audit retention: %w", err)
	}
	state = info.State
	first, err := l.recordAt(ctx, state.FirstSeq)
	if err != nil || first == nil {
		return state, false, 0, err
	}
	head, _ := decodeLine(first)
	tooOld = r.MaxAge > 0 && head.Time.Before(now.Add(-r.MaxAge))
	if r.MaxSize > 0 && int64(state.Bytes) > r.MaxSize {
		excess = int64(state.Bytes) - r.MaxSize
	}
	return state, tooOld, excess, nil
}

// maxScan bounds the records one Retain reads: a limit set on a long log
// drops its head over several passes, each up to the last checkpoint it
// read, rather than reading the whole log at once. (A variable for the
// tests.)
var maxScan uint64 = 100_000

// findCut reads the records from first to end (a checkpoint) and returns
// the sequence of the checkpoint to keep as the first record, 0 for none,
// and why.
func (l *Log) findCut(ctx context.Context, first, end uint64, r Retention, cutoff time.Time, tooOld bool, excess int64) (uint64, string, error) {
	c := &cutScan{first: first, tooOld: tooOld, excess: excess, cutoff: cutoff}
	for seq := first; seq <= end; seq++ {
		if seq-first >= maxScan {
			// Enough for one pass: the size limit is met in part.
			if c.excess > 0 && c.sizeCut == 0 {
				c.sizeCut = c.lastCheckpoint
			}
			c.excess = 0
			break
		}
		rec, size, err := l.decodedAt(ctx, seq)
		if err != nil {
			return 0, "", err
		}
		if size > 0 && c.see(seq, rec, size) {
			break
		}
	}
	if c.excess > 0 && c.sizeCut == 0 {
		c.sizeCut = end
	}
	cut, reason := chooseCut(c.ageCut, c.sizeCut, r, cutoff, excess)
	return cut, reason, nil
}

// cutScan is where findCut stands as it reads the records in order.
type cutScan struct {
	first                           uint64
	tooOld                          bool
	excess, dropped                 int64
	ageCut, sizeCut, lastCheckpoint uint64
	cutoff                          time.Time
}

// see takes the record at seq, of size bytes; true when no later record
// can move a cut.
func (c *cutScan) see(seq uint64, rec checkpointLine, size int) bool {
	if rec.Kind == KindCheckpoint && seq > c.first {
		c.lastCheckpoint = seq
		if c.tooOld {
			c.ageCut = seq // every record before it is older than cutoff
		}
		if c.excess > 0 && c.sizeCut == 0 && c.dropped >= c.excess {
			c.sizeCut = seq
		}
	}
	if !rec.Time.Before(c.cutoff) {
		c.tooOld = false // records are appended in time order
	}
	if !c.tooOld && (c.excess == 0 || c.sizeCut != 0) {
		return true
	}
	c.dropped += int64(size)
	return false
}

// decodedAt is the record at seq and its size in bytes; size 0 when there
// is none.
func (l *Log) decodedAt(ctx context.Context, seq uint64) (checkpointLine, int, error) {
	data, err := l.recordAt(ctx, seq)
	if err != nil {
		return checkpointLine{}, 0, fmt.Errorf("audit retention: record %d: %w", seq, err)
	}
	if data == nil {
		return checkpointLine{}, 0, nil
	}
	rec, ok := decodeLine(data)
	if !ok {
		return checkpointLine{}, 0, fmt.Errorf("audit retention: record %d is not an audit record", seq)
	}
	return rec, len(data), nil
}

// chooseCut is the later of the cuts for age and for size, with why.
func chooseCut(ageCut, sizeCut uint64, r Retention, cutoff time.Time, over int64) (uint64, string) {
	cut, reason := ageCut, fmt.Sprintf("max_age %s: records older than %s", r.MaxAge, cutoff.UTC().Format(time.RFC3339))
	if sizeCut > cut {
		cut, reason = sizeCut, fmt.Sprintf("max_size %d bytes: the log held %d bytes more", r.MaxSize, over)
	}
	return cut, reason
}

// dropBefore drops every record before the checkpoint at cut and returns
// that checkpoint's id. It holds the chain's lock throughout, once every
// record sent is answered, so that the limit it sets drops exactly the
// records before cut.
func (l *Log) dropBefore(ctx context.Context, cut uint64) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ready(); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	select {
	case <-l.js.PublishAsyncComplete():
	case <-wctx.Done():
		return "", errors.New("records sent before are still unanswered")
	}
	data, err := l.recordAt(ctx, cut)
	if err != nil {
		return "", err
	}
	rec, ok := decodeLine(data)
	if data == nil || !ok || rec.Kind != KindCheckpoint {
		return "", fmt.Errorf("record %d is not a checkpoint", cut)
	}
	var id struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(data, &id)
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return "", err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.State.LastSeq != l.seq {
		// A record sent is not stored: the next Publish takes the chain
		// up again, and the next pass drops the head.
		return "", fmt.Errorf("the stream's last record is %d, not %d", info.State.LastSeq, l.seq)
	}
	cfg := info.Config
	limit := cfg.MaxMsgs
	cfg.MaxMsgs = int64(info.State.LastSeq - cut + 1)
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		return "", fmt.Errorf("drop the records before %d: %w", cut, err)
	}
	cfg.MaxMsgs = limit
	// The limit must go before the next record, or that record would
	// drop the checkpoint now first.
	if err := jsretry.Do(ctx, func(ctx context.Context) error {
		_, err := l.js.UpdateStream(ctx, cfg)
		return err
	}); err != nil {
		l.broken = true // no record is appended until the stream is read again
		return "", fmt.Errorf("take the limit of %d records off the stream again: %w", cfg.MaxMsgs, err)
	}
	if info, err = st.Info(ctx); err == nil && info.State.FirstSeq != cut {
		return "", fmt.Errorf("the stream starts at %d after the drop, not at the checkpoint %d", info.State.FirstSeq, cut)
	}
	return id.ID, err
}

// firstCheckpointCount is the count of the stream's first record when it
// is a checkpoint the head was dropped before (the records before it, in
// the chain); 0 otherwise.
func firstCheckpointCount(ctx context.Context, st jetstream.Stream, state jetstream.StreamState) (uint64, error) {
	if state.Msgs == 0 || state.FirstSeq <= 1 {
		return 0, nil
	}
	m, err := st.GetMsg(ctx, state.FirstSeq)
	if err != nil {
		return 0, fmt.Errorf("read the first audit record: %w", err)
	}
	rec, ok := decodeLine(m.Data)
	if !ok || rec.Kind != KindCheckpoint {
		// Dropped by something other than Retain: no export of this
		// stream verifies (Verify says where it starts).
		return 0, nil
	}
	return rec.Count, nil
}
