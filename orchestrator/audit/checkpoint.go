package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Checkpoints: what makes a recomputed chain, a cut tail and a removed
// record at the end evident.
//
// The hash chain alone shows that a record was changed, dropped or
// reordered, but anyone who can write the stream, or edit an export, can
// recompute every hash after the record they changed, and nothing follows
// the last record to show that it was changed or that records after it
// were cut off. So the orchestrator signs checkpoints: records of kind
// checkpoint, in the chain like any other, whose prev is the head of the
// chain they cover (the hash of the record before them) and whose count is
// the number of records before them. The signature is Ed25519 over every
// byte of the checkpoint line but the signature itself: its prev and count,
// and also its id, time and key.
//
// A checkpoint in the stream itself, rather than in a stream of its own,
// keeps one order and one export: verify finds the latest checkpoint as the
// last line, and a checkpoint covers every record before it, since each
// record's hash is in the next one's prev.
//
// Verify demands that the last line of an export is a checkpoint that
// verifies with a key it was given, and that every checkpoint does, with
// the count of the lines before it. Cutting the tail off an export leaves
// it ending with a record no checkpoint covers, unless the cut falls right
// after a checkpoint (the export then is the log as it stood when that
// checkpoint was signed, which its time says); removing a checkpoint breaks
// the chain, or leaves the end uncovered; a recomputed chain makes every
// later checkpoint's signature fail.
//
// Signing is not on the path of a call: a record is chained and sent as
// before, and a goroutine signs a checkpoint when a run finishes (at most
// every checkpointGap), CheckpointInterval after the first record no
// checkpoint covers, on Checkpoint (an export) and on Close (shutdown).

// KindCheckpoint is a signed checkpoint of the chain (checkpoint.go).
const KindCheckpoint = "checkpoint"

// checkpointGap is the least time between two checkpoints that runs
// finishing ask for: under load, one checkpoint covers many runs.
const checkpointGap = 10 * time.Millisecond

// DefaultCheckpointInterval is how long a record may go uncovered by a
// checkpoint while the orchestrator runs.
const DefaultCheckpointInterval = time.Second

// signedPrefix separates what a checkpoint signs from every other use of
// the key.
const signedPrefix = "sluice audit checkpoint\n"

// signatureField starts the last field of a checkpoint line.
const signatureField = `,"signature":"`

// PublicKeyString is how a public key is written in checkpoints, by sluice
// doctor and to --public-key: "ed25519:" and the key in standard base64.
func PublicKeyString(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads a key as PublicKeyString writes it; the prefix may
// be left out.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "ed25519:"))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not an Ed25519 public key (ed25519: and 32 bytes in base64)", s)
	}
	return ed25519.PublicKey(b), nil
}

// signer signs the checkpoints of a Log.
type signer struct {
	key      ed25519.PrivateKey
	pub      string // PublicKeyString
	interval time.Duration

	pending chan struct{} // a record no checkpoint covers was published
	due     chan struct{} // a run finished
	stop    chan struct{}
	done    chan struct{}
}

// signed appends the signature of line (a checkpoint encoded without one)
// to it.
func (s *signer) sign(line []byte) []byte {
	body := line[:len(line)-1] // without the closing brace
	msg := make([]byte, 0, len(signedPrefix)+len(body))
	msg = append(append(msg, signedPrefix...), body...)
	sig := ed25519.Sign(s.key, msg)
	out := make([]byte, 0, len(body)+len(signatureField)+base64.StdEncoding.EncodedLen(len(sig))+2)
	out = append(out, body...)
	out = append(out, signatureField...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	return append(out, '"', '}')
}

// noteRecord, with l.mu held, counts a record just published that is not a
// checkpoint, and tells the signing goroutine.
func (l *Log) noteRecord(kind string) {
	l.uncovered++
	if l.signer == nil {
		return
	}
	ch := l.signer.pending
	if kind == KindRunFinished {
		ch = l.signer.due
	} else if l.uncovered != 1 {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Checkpoint signs a checkpoint of every record published so far, unless
// the last record is one already, and waits until the stream has stored
// it. It returns the stream sequence of that checkpoint: an export through
// it ends with a signature ([Log.ExportThrough]).
func (l *Log) Checkpoint(ctx context.Context) (uint64, error) {
	if l.signer == nil {
		return 0, fmt.Errorf("audit checkpoint: no signing key")
	}
	// Another orchestrator's record may take the checkpoint's place: the
	// chain is then taken up from the stream, and another checkpoint,
	// counting that record, signed.
	for try := 1; ; try++ {
		// Another orchestrator may have appended since this log's last
		// record: the chain is then taken up from the stream, so that the
		// checkpoint covers their records too.
		last, lerr := l.streamLast(ctx)
		l.mu.Lock()
		if lerr == nil && last > l.seq {
			l.broken = true
		}
		seq, p, err := l.checkpointLocked()
		l.mu.Unlock()
		if err != nil {
			return 0, fmt.Errorf("audit checkpoint: %w", err)
		}
		if p != nil {
			err = p.Wait(ctx)
		}
		if err == nil {
			return seq, nil
		}
		if !errors.Is(err, errDisplaced) || try == checkpointTries {
			return 0, fmt.Errorf("audit checkpoint: %w", err)
		}
	}
}

// streamLast is the sequence of the stream's last record.
func (l *Log) streamLast(ctx context.Context) (uint64, error) {
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq, nil
}

// checkpointTries bounds the checkpoints Checkpoint signs, when others'
// records keep taking their place.
const checkpointTries = 8

// checkpointLocked, with l.mu held, publishes a checkpoint when records
// follow the last one, and returns the sequence of the latest checkpoint
// and its Pending (nil when it is known to be stored).
func (l *Log) checkpointLocked() (uint64, *Pending, error) {
	if err := l.ready(); err != nil {
		return 0, nil, err
	}
	if l.uncovered == 0 && l.n > 0 {
		return l.seq, l.lastCheckpoint, nil
	}
	r := Record{V: Version, ID: NewID(), Kind: KindCheckpoint, Time: time.Now().UTC(), Count: l.n, Key: l.signer.pub}
	body, err := encodeRecord(&r)
	if err != nil {
		return 0, nil, err
	}
	p, err := l.send(l.signer.sign(withPrev(body, l.last)), r.ID, nil)
	if err != nil {
		return 0, nil, err
	}
	l.uncovered = 0
	l.lastCheckpoint = p
	return l.seq, p, nil
}

// signLoop signs checkpoints until Close: soon after a run finishes, and
// interval after the first record no checkpoint covers.
func (l *Log) signLoop() {
	s := l.signer
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.due:
		case <-s.pending:
			timer.Reset(s.interval)
			select {
			case <-s.stop:
				return
			case <-s.due:
				timer.Stop()
			case <-timer.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout+ackTimeout)
		_, _ = l.Checkpoint(ctx) // a checkpoint not stored breaks the chain's tail: the next Publish takes it up again
		cancel()
		select {
		case <-s.stop:
			return
		case <-time.After(checkpointGap):
		}
	}
}

// Close stops signing in the background and signs a last checkpoint, so
// that the log ends covered: the orchestrator calls it when it shuts down,
// after its last record. Without a signing key it does nothing.
func (l *Log) Close(ctx context.Context) error {
	if l.signer == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		close(l.signer.stop)
		<-l.signer.done
	})
	_, err := l.Checkpoint(ctx)
	return err
}

// Verified is what Verify found in an export.
type Verified struct {
	Records     int // lines, checkpoints included
	Checkpoints int
	// The last checkpoint: when it was signed, and by which key.
	Signed time.Time
	Key    string
	// Dropped counts the records dropped before the first line, which is
	// then a checkpoint signed at Start (retention.go); 0 when the export
	// starts the chain.
	Dropped uint64
	Start   time.Time
}

// checkpointLine is what Verify reads of a line.
type checkpointLine struct {
	Prev  *string   `json:"prev"`
	V     int       `json:"v"`
	Kind  string    `json:"kind"`
	Time  time.Time `json:"time"`
	Count uint64    `json:"count"`
	Key   string    `json:"key"`
}

// verifyCheckpoint checks the checkpoint at line n (1-based) of an export,
// which before records precede: the lines before it, and those dropped
// before the first line.
func verifyCheckpoint(n int, before uint64, line []byte, rec *checkpointLine, keys []ed25519.PublicKey) error {
	if rec.Count != before {
		return fmt.Errorf("line %d: the checkpoint covers %d records, but %d precede it: records were dropped or added before it", n, rec.Count, before)
	}
	i := bytes.LastIndex(line, []byte(signatureField))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return fmt.Errorf("line %d: the checkpoint has no signature", n)
	}
	sig, err := base64.StdEncoding.DecodeString(string(line[i+len(signatureField) : len(line)-2]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("line %d: the checkpoint's signature is not an Ed25519 signature", n)
	}
	var pub ed25519.PublicKey
	for _, k := range keys {
		if PublicKeyString(k) == rec.Key {
			pub = k
		}
	}
	if pub == nil {
		return fmt.Errorf("line %d: the checkpoint is signed by %s, which is not the key it is checked with (sluice doctor prints the deployment's key)", n, rec.Key)
	}
	msg := append([]byte(signedPrefix), line[:i]...)
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("line %d: the checkpoint's signature does not verify: the records before it were changed and the chain recomputed, or the checkpoint was changed", n)
	}
	return nil
}

// decodeLine reads the fields Verify needs of one line.
func decodeLine(line []byte) (checkpointLine, bool) {
	var rec checkpointLine
	if err := json.Unmarshal(line, &rec); err != nil || rec.V == 0 {
		return rec, false
	}
	return rec, true
}
