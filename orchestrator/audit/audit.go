// Package audit appends the record of everything the orchestrator decides
// and does to a JetStream stream: runs, calls with their labels, decisions
// with the rules behind them, results, and refusals by the bus. A record is
// appended, and acknowledged by the stream, before the action it describes:
// [Log.Append] waits for that; [Log.Publish] lets a caller send several
// records and wait for them together.
//
// Records carry labels, names, rules and ids — never argument values, tool
// output, prompts or secrets.
package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/orchestrator/internal/telemetry"
	"github.com/sluicehq/sluice/schemas"
)

// Version of the record format.
const Version = 1

// Kinds of records.
const (
	KindRunStarted  = "run_started"
	KindDecision    = "decision"
	KindResult      = "result"
	KindRunFinished = "run_finished"
	// KindRunResumed starts another pass over a run that was held or
	// interrupted: after an answer to a held call, or a restart.
	KindRunResumed = "run_resumed"
	// KindRunInterrupted: a run stopped before it finished, because its
	// orchestrator stopped or a person interrupted it; Resume says when
	// it goes on, Steps where it stopped. A cancelled run ends with a
	// run_finished record of status cancelled, naming who (User).
	KindRunInterrupted = "run_interrupted"
	// KindAnswer is a person's answer to a held call.
	KindAnswer    = "answer"
	KindViolation = "violation"
	KindEgress    = "egress"
	// KindConfigReload is a reload of a running orchestrator's
	// configuration and policies (sluice reload, SIGHUP): who asked (User),
	// the configuration file, the fingerprints before and of what was read,
	// and whether it was applied, unchanged or refused (Status), with why.
	KindConfigReload = "config_reload"
	// KindRemembered is an answer a person asked to be remembered (Op
	// "remember", with the held call's approval in Rules) or revoked later
	// (Op "revoke"): who (User), the tool, and the scope in words
	// (Subject), under Rules "remembered:ID".
	KindRemembered = "remembered"
	// KindProgram is a program a plan step's planner wrote (Program), when
	// the step first gets it, with its label (the planner's answer's).
	KindProgram = "program"
	// KindCheckpoint: see checkpoint.go.
)

// Record is one audit event.
type Record struct {
	V int `json:"v"`
	// Prev is the SHA-256, in hex, of the previous record exactly as it
	// was stored; empty for the first. The chain makes a changed, dropped
	// or reordered record evident (Verify).
	Prev      string               `json:"prev,omitempty"`
	ID        string               `json:"id"`
	Kind      string               `json:"kind"`
	Time      time.Time            `json:"time"`
	RunID     string               `json:"run_id,omitempty"`
	Flow      string               `json:"flow,omitempty"`
	Step      string               `json:"step,omitempty"`
	Tool      string               `json:"tool,omitempty"`
	MsgID     string               `json:"msg_id,omitempty"`
	Label     *ifc.Label           `json:"label,omitempty"`
	ArgLabels map[string]ifc.Label `json:"arg_labels,omitempty"`
	Action    string               `json:"action,omitempty"`
	Rules     []string             `json:"rules,omitempty"`
	Reasons   []string             `json:"reasons,omitempty"`
	Status    string               `json:"status,omitempty"`
	Error     string               `json:"error,omitempty"`
	// Usage of a result record: the tokens the call spent at a model API,
	// as its worker reported them (the llm worker); absent for other tools.
	Usage *schemas.Usage `json:"usage,omitempty"`
	// Program of a program record: the text of a plan step's program.
	Program string `json:"program,omitempty"`
	// Violation fields: the NATS user and what it was refused.
	User    string `json:"user,omitempty"`
	Op      string `json:"op,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Config reload fields: the configuration file reloaded (absent for
	// the built-in defaults), the fingerprint in force before the reload,
	// and that of the configuration read.
	File           string `json:"file,omitempty"`
	OldFingerprint string `json:"old_fingerprint,omitempty"`
	NewFingerprint string `json:"new_fingerprint,omitempty"`
	// Steps of a run_started record (or a decision that starts its run):
	// the flow's steps in file order, with their tools and the steps each
	// reads; of a run_interrupted record:
	// the steps it stopped at.
	Steps []PlanStep `json:"steps,omitempty"`
	// Resume of a run_interrupted record: on_start (the next orchestrator
	// resumes it) or on_request (only sluice up --resume does).
	Resume string `json:"resume,omitempty"`
	// StartsRun marks the decision record that is also the start of its
	// run: what a run_started record says rides on the run's first
	// decision (Steps lists the flow's steps), one write instead of two.
	StartsRun bool `json:"starts_run,omitempty"`
	// EndsRun, on a result record, is the status of the run it is also the
	// end of (completed): what a run_finished record says rides on the
	// run's last result, one write instead of two.
	EndsRun string `json:"ends_run,omitempty"`
	// Checkpoint of a retention record: the id of the checkpoint the log
	// starts at once the records before it were dropped (retention.go).
	Checkpoint string `json:"checkpoint,omitempty"`
	// Checkpoint fields (checkpoint.go): the number of records before it
	// (of a retention record: the number dropped), the public key that
	// signed it, and the signature, which must stay the last field.
	Count     uint64 `json:"count,omitempty"`
	Key       string `json:"key,omitempty"`
	Signature string `json:"signature,omitempty"`
}

// PlanStep is one step of a flow as a run_started record lists it.
type PlanStep struct {
	ID   string   `json:"id"`
	Tool string   `json:"tool"`
	Deps []string `json:"deps,omitempty"`
	// Status, in a run_finished record, is "skipped" for a step that did
	// not run (a step it reads did not complete, or its if was false).
	Status string `json:"status,omitempty"`
}

// StreamName is the JetStream stream holding the audit log of the default
// deployment; another's is schemas.StoreName(deployment, "AUDIT")
// (Options.Deployment).
const StreamName = "SLUICE_AUDIT"

// Log appends records.
type Log struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	subject string
	stream  string // the stream's name

	mu     sync.Mutex // serializes publishes, so the chain has one order
	last   string     // hash of the last record published
	lastID string     // its id (Nats-Msg-Id); "" when it was stored without one
	chain             // where each record must be stored (failover.go)
	// n counts the records in the stream, the last one published
	// included; uncovered counts those after the last checkpoint.
	n, uncovered uint64
	// lastCheckpoint is the latest checkpoint published, until it is
	// known to be stored.
	lastCheckpoint *Pending

	signer    *signer // nil: the log signs no checkpoints
	closeOnce sync.Once

	// fault, when the state directory cannot be written, fails every
	// record waited for and every record after it at once.
	fault *fault.Store
}

// Open creates (or opens) the audit stream under prefix, with opts[0] when
// given.
func Open(ctx context.Context, nc *nats.Conn, prefix string, opts ...Options) (*Log, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, err
	}
	stream := schemas.StoreName(o.Deployment, "AUDIT")
	if o.Replicas == 0 {
		o.Replicas = 1
		if st, err := js.Stream(ctx, stream); err == nil {
			o.Replicas = st.CachedInfo().Config.Replicas
		}
	}
	subject := prefix + ".audit"
	// A cluster that has just started may still be electing its leaders.
	err = jsretry.Do(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:      stream,
			Subjects:  []string{subject},
			Storage:   jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy,
			Replicas:  o.Replicas,
			// No record can be taken out of the log, by anyone: the
			// server refuses to delete one and to purge the stream.
			// (An existing stream gets both on this update; the server
			// never lets them be turned off again.)
			DenyDelete: true,
			DenyPurge:  true,
		})
		return err
	})
	if err != nil {
		if err := o.Fault.Refused("audit log", err); isFault(err) {
			return nil, err
		}
		return nil, fmt.Errorf("open audit stream (%d replicas): %w", o.Replicas, err)
	}
	l := &Log{js: js, nc: nc, subject: subject, stream: stream, fault: o.Fault}
	if err := l.sync(ctx); err != nil {
		return nil, fmt.Errorf("open audit stream: %w", err)
	}
	if o.Signer != nil {
		interval := o.CheckpointInterval
		if interval <= 0 {
			interval = DefaultCheckpointInterval
		}
		l.signer = &signer{key: o.Signer, pub: PublicKeyString(o.Signer.Public().(ed25519.PublicKey)), interval: interval,
			pending: make(chan struct{}, 1), due: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		// Records a crash left uncovered are signed now.
		if l.uncovered > 0 {
			if _, err := l.Checkpoint(ctx); err != nil {
				return nil, fmt.Errorf("open audit stream: %w", err)
			}
		}
		go l.signLoop()
	}
	return l, nil
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// NewID returns a ULID with entropy from crypto/rand, so that no id can be
// guessed.
//
// It is ulid.MustNew(ulid.Now(), rand.Reader).String() with the ULID kept
// off the heap: an io.Reader would be handed a slice of it.
func NewID() string {
	var id ulid.ULID
	if err := id.SetTime(ulid.Now()); err != nil {
		panic(err)
	}
	// crypto/rand.Read never returns an error: it crashes the program.
	_, _ = rand.Read(id[6:])
	return id.String()
}

// Append writes r and waits until the stream has stored it: [Log.Publish],
// then [Pending.Wait].
func (l *Log) Append(ctx context.Context, r Record) error {
	p, err := l.Publish(r)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// Publish hands r to the stream and returns without waiting for the stream
// to store it; [Pending.Wait] does that. It fills in V, and ID and Time
// when they are empty.
//
// What it guarantees:
//
//   - One order. Prev is taken, and the record handed to the connection,
//     under the lock that orders the chain, so each record's prev is the
//     hash of the record published just before it. Records go to the
//     stream on one connection, in that order. A try lost while the bus
//     fails over to another server is sent again, but each record names
//     the place it must be stored at, right after the record before it,
//     and the stream refuses it anywhere else (see failover.go). The
//     stream stores them in the order of the Publish calls, or not at
//     all.
//   - Stored only once acknowledged. A record is stored when its Wait
//     returns nil. A record that is not stored is followed by none of the
//     records chained after it: the stream refuses them too, and the next
//     Publish takes the chain up from the last record stored, so that the
//     export still verifies. That a later record was acknowledged says
//     nothing about an earlier one; wait for each.
//   - The promise of this package, that a record is acknowledged by the
//     stream before the action it describes, holds where the caller waits
//     for the record, and for every earlier record the action depends on,
//     before acting. Acknowledgements come back in order, so waiting for
//     several records published one after another costs about one round
//     trip to the stream, not one each.
//
// An error from Publish means the record was not sent and the chain was
// not extended by it.
func (l *Log) Publish(r Record) (*Pending, error) {
	r.V = Version
	if r.ID == "" {
		r.ID = NewID()
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	// Encode without prev outside the lock, leaving room for it; prev,
	// the second field, is filled in under the lock (see withPrev).
	body, err := encodeRecord(&r)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ready(); err != nil {
		return nil, appendError(err)
	}
	p, err := l.send(withPrev(body, l.last), r.ID, body)
	if err != nil {
		return nil, appendError(err)
	}
	l.noteRecord(r.runKind())
	observe(&r)
	return p, nil
}

// Starts says whether r starts its run: a run_started record, or a
// decision that is also the run's start (StartsRun).
func (r *Record) Starts() bool {
	return r.Kind == KindRunStarted || (r.Kind == KindDecision && r.StartsRun)
}

// Ends returns the status of the run r ends, and whether it ends one: a
// run_finished record, or a result that is also the run's end (EndsRun).
func (r *Record) Ends() (string, bool) {
	if r.Kind == KindRunFinished {
		return r.Status, true
	}
	if r.Kind == KindResult && r.EndsRun != "" {
		return r.EndsRun, true
	}
	return "", false
}

// runKind is KindRunFinished for a record that ends its run (Ends);
// otherwise its kind.
func (r *Record) runKind() string {
	if _, end := r.Ends(); end {
		return KindRunFinished
	}
	return r.Kind
}

// observe counts a record handed to the stream in the orchestrator's
// metrics: its kind, and what a decision, an egress request or a
// violation says. A rule is counted by its name ("name (file:line:col)"
// in the record), and the one-off rule an approval names ("approval:ID")
// as "approval".
func observe(r *Record) {
	telemetry.AuditRecord(r.Kind, r.Op)
	switch r.Kind {
	case KindDecision:
		rules := make([]string, len(r.Rules))
		for i, ref := range r.Rules {
			// A rule by its name, without where it is written.
			rules[i], _, _ = strings.Cut(ref, " (")
			if strings.HasPrefix(ref, "approval:") {
				rules[i] = "approval"
			}
		}
		telemetry.Decision(r.Tool, r.Action, rules)
	case KindEgress:
		telemetry.Egress(r.Subject, r.Status == "refused")
	}
}

// ready, with l.mu held, refuses every record once the state directory
// cannot be written, and takes the chain up from the stream again when a
// record was not stored.
func (l *Log) ready() error {
	if err := l.fault.Err(); err != nil {
		return err
	}
	if l.broken {
		return l.resync()
	}
	return nil
}

// send, with l.mu held, hands data, a record chained to the last one, to
// the stream, to be stored right after it. id is the record's; body, when
// not nil, is the record as encodeRecord encoded it, so that it can be
// chained again after another orchestrator's record took its place
// (failover.go: "Several writers"); a checkpoint has none.
func (l *Log) send(data []byte, id string, body []byte) (*Pending, error) {
	t := try{l: l, id: id, body: body}
	if err := l.sendTry(&t, data); err != nil {
		return nil, err
	}
	return &Pending{try: t}, nil
}

// sendTry, with l.mu held, sends data as the next record of the chain and
// makes t the try of it: the record must follow the last one published,
// at its sequence and with its id, and carries its own id, so that the
// stream stores a try sent again once.
func (l *Log) sendTry(t *try, data []byte) error {
	msg := &nats.Msg{Subject: l.subject, Header: nats.Header{}, Data: data}
	msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(l.seq, 10))
	msg.Header.Set(jetstream.MsgIDHeader, t.id)
	if l.lastID != "" {
		msg.Header.Set(jetstream.ExpectedLastMsgIDHeader, l.lastID)
	}
	ack, err := l.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
	if err != nil {
		return err
	}
	now := time.Now()
	t.ack, t.sent, t.msg, t.seq, t.gen, t.prevID, t.deadline = ack, now, msg, l.seq, l.gen, l.lastID, now.Add(appendTimeout)
	l.last, l.lastID = hash(msg.Data), t.id
	l.seq++
	l.n++
	return nil
}

// head is how every encoded record starts: "v" is its first field and
// "prev" follows it when there is one; prevField is the room that
// `"prev":"<64 hex digits>",` takes.
var head = []byte(`{"v":` + strconv.Itoa(Version) + `,`)

const prevField = len(`"prev":"",`) + 2*sha256.Size

// encodeRecord encodes r, whatever its Prev, as json.Marshal encodes it
// with an empty Prev, after prevField spare bytes for withPrev.
func encodeRecord(r *Record) ([]byte, error) {
	b := make([]byte, prevField, sizeHint(r))
	b = append(b, head...)
	return appendRecord(b, r)
}

// sizeHint is about what r encodes to, so that encodeRecord allocates
// once for most records: the names and punctuation, the strings, and
// about 128 bytes a label.
func sizeHint(r *Record) int {
	const label = 128
	n := prevField + 256 + len(r.ID) + len(r.Kind) + len(r.RunID) + len(r.Flow) + len(r.Step) + len(r.Tool) +
		len(r.MsgID) + len(r.Action) + len(r.Status) + len(r.Error) + len(r.User) + len(r.Op) + len(r.Subject) +
		len(r.File) + len(r.OldFingerprint) + len(r.NewFingerprint) +
		64*len(r.Steps) + len(r.Resume) + len(r.EndsRun) + len(r.Checkpoint) + len(r.Key) + len(r.Signature)
	for _, s := range r.Rules {
		n += len(s) + 3
	}
	for _, s := range r.Reasons {
		n += len(s) + 3
	}
	if r.Label != nil {
		n += label
	}
	for name := range r.ArgLabels {
		n += len(name) + 4 + label
	}
	return n
}

// withPrev returns the record encodeRecord encoded into buf, as
// json.Marshal encodes it with Prev set to prev (a hex hash, or empty):
// "prev" is the field after "v", and a hex hash needs no escaping. It
// writes into buf's spare bytes.
func withPrev(buf []byte, prev string) []byte {
	if prev == "" {
		return buf[prevField:]
	}
	if len(prev) != 2*sha256.Size {
		panic("audit: prev is not a SHA-256 in hex")
	}
	n := copy(buf, head)
	n += copy(buf[n:], `"prev":"`)
	n += copy(buf[n:], prev)
	copy(buf[n:], `",`)
	return buf
}

// Pending is a published record whose acknowledgement by the stream has
// not been waited for.
type Pending struct {
	// What retry needs to send the record again: the try's
	// acknowledgement, when it was sent, and what it was chained to.
	try

	mu   sync.Mutex
	done bool
	err  error
}

// Wait returns nil once the stream has stored the record, or the reason it
// did not (for example, the stream is gone). Waiting again returns the same
// answer. A try that is lost or refused while the bus fails over to another
// server is sent again, for up to 20s after Publish (see failover.go).
// When ctx ends first, Wait returns an error and the record may still be
// stored.
func (p *Pending) Wait(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return p.err
	}
	for {
		var err error
		select {
		case a := <-p.ack.Ok():
			p.l.stored(a.Sequence)
			p.done = true
			telemetry.AuditAppend(time.Since(p.sent))
			return nil
		case err = <-p.ack.Err():
			// Tries stop too when the state directory cannot be
			// written.
			rctx, stop := p.l.fault.Bind(ctx)
			err = p.retry(rctx, err)
			if err != nil && ctx.Err() == nil && rctx.Err() != nil {
				err = context.Cause(rctx)
			}
			stop()
		case <-p.l.fault.Done():
			// The server does not answer a write it could not store.
			select {
			case a := <-p.ack.Ok():
				p.l.stored(a.Sequence)
				p.done = true
				return nil
			default:
			}
			err = p.l.fault.Err()
		case <-ctx.Done():
			err = ctx.Err()
		}
		switch {
		case err == nil:
			continue // sent again
		case err == errStored:
			p.l.stored(p.seq + 1)
			p.done = true
			return nil
		case ctx.Err() != nil:
			p.l.giveUp(p.gen)
			return fmt.Errorf("append audit record: %w", ctx.Err())
		}
		p.l.giveUp(p.gen)
		p.done, p.err = true, appendError(p.l.fault.Refused("audit log", err))
		return p.err
	}
}

// appendError is the error of a record not stored: a failure to write the
// state directory (which names the audit log or the run state, and why)
// as it is, any other error with what failed.
func appendError(err error) error {
	if isFault(err) {
		return err
	}
	return fmt.Errorf("append audit record: %w", err)
}

// isFault says whether err is a failure to write the state directory.
func isFault(err error) bool {
	var fe *fault.Error
	return errors.As(err, &fe)
}

// ackTimeout bounds the wait for the stream's answer to one try.
const ackTimeout = 5 * time.Second

// Records reads the whole log, oldest first.
func (l *Log) Records(ctx context.Context) ([]Record, error) {
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []Record
	if info.State.Msgs == 0 {
		return out, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for uint64(len(out)) < info.State.Msgs {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			return out, err
		}
		var r Record
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return out, fmt.Errorf("audit record %d: %w", len(out)+1, err)
		}
		out = append(out, r)
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= info.State.LastSeq {
			break
		}
	}
	return out, nil
}

// Export writes every record, oldest first, one JSON line each, exactly as
// stored. Records written after the last checkpoint are in it too: to
// hand an export to Verify, sign a checkpoint and export through it
// ([Log.Checkpoint], [Log.ExportThrough]).
func (l *Log) Export(ctx context.Context, w io.Writer) (int, error) {
	return l.ExportThrough(ctx, w, 0)
}

// ExportThrough is Export up to the record at stream sequence last (0:
// the last record stored).
func (l *Log) ExportThrough(ctx context.Context, w io.Writer, last uint64) (int, error) {
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	if last == 0 || last > info.State.LastSeq {
		last = info.State.LastSeq
	}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= last; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("audit record %d: %w", seq, err)
		}
		if _, err := w.Write(append(m.Data, '\n')); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Verify checks an export against its checkpoints (checkpoint.go): every
// line is a record whose prev is the hash of the line before it; every
// checkpoint counts the lines before it and is signed by one of keys; and
// the last line is a checkpoint, so that every record is covered by a
// signature. The first line starts the chain, or is a checkpoint the
// records before it were dropped before (retention.go): its count says
// how many, and its signature, over its prev, vouches for them. It
// returns what it found, or an error naming the first line that fails.
func Verify(r io.Reader, keys ...ed25519.PublicKey) (Verified, error) {
	var v Verified
	if len(keys) == 0 {
		return v, errors.New("no public key to check the checkpoints with")
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	prev := ""
	n, lastCheckpoint := 0, 0
	// dropped counts the records before the first line.
	var dropped uint64
	for sc.Scan() {
		line := sc.Bytes()
		n++
		rec, ok := decodeLine(line)
		if !ok {
			return v, fmt.Errorf("line %d: not an audit record", n)
		}
		got := ""
		if rec.Prev != nil {
			got = *rec.Prev
		}
		if got != prev {
			if n == 1 && rec.Kind == KindCheckpoint && rec.Count > 0 {
				// Starts at a checkpoint, after dropped records.
				dropped = rec.Count
				v.Dropped, v.Start = dropped, rec.Time
			} else if n == 1 {
				return v, fmt.Errorf("line 1: the chain does not start here, and not at a checkpoint either: records before it were dropped")
			} else {
				return v, fmt.Errorf("line %d: the chain is broken: line %d was changed, or records between them were dropped or reordered", n, n-1)
			}
		}
		if rec.Kind == KindCheckpoint {
			if err := verifyCheckpoint(n, dropped+uint64(n-1), line, &rec, keys); err != nil {
				return v, err
			}
			lastCheckpoint = n
			v.Checkpoints++
			v.Signed, v.Key = rec.Time, rec.Key
		}
		prev = hash(line)
		v.Records = n
	}
	if err := sc.Err(); err != nil {
		return v, err
	}
	return v, coveredToTheEnd(n, lastCheckpoint)
}

// coveredToTheEnd refuses an export of n lines whose last checkpoint, at
// line lastCheckpoint, is not its last line.
func coveredToTheEnd(n, lastCheckpoint int) error {
	switch {
	case n == 0:
		return errors.New("the export is empty: it holds no checkpoint")
	case lastCheckpoint == 0:
		return fmt.Errorf("line %d: no checkpoint in the export covers lines 1 to %d: its end was cut off, or its checkpoints removed", n, n)
	case lastCheckpoint < n:
		return fmt.Errorf("line %d: no checkpoint covers lines %d to %d (the last is line %d): the export was cut after a record, or a checkpoint at its end was removed", n, lastCheckpoint+1, n, lastCheckpoint)
	}
	return nil
}

// appendRecord appends the fields of r from "id" to the closing brace,
// byte for byte as json.Marshal encodes them, without reflection: an audit
// record is encoded for every decision and result.
// TestEncodeRecordAsMarshal holds it to json.Marshal field by field.
func appendRecord(b []byte, r *Record) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("audit record time %s: year outside 0 to 9999", r.Time)
	}
	b = append(b, `"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "run_id", r.RunID)
	b = appendField(b, "flow", r.Flow)
	b = appendField(b, "step", r.Step)
	b = appendField(b, "tool", r.Tool)
	b = appendField(b, "msg_id", r.MsgID)
	if r.Label != nil {
		b = append(b, `,"label":`...)
		b = r.Label.AppendJSON(b)
	}
	if len(r.ArgLabels) > 0 {
		var small [8]string
		names := small[:0]
		for name := range r.ArgLabels {
			names = append(names, name)
		}
		slices.Sort(names)
		b = append(b, `,"arg_labels":{`...)
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, name)
			b = append(b, ':')
			b = r.ArgLabels[name].AppendJSON(b)
		}
		b = append(b, '}')
	}
	b = appendField(b, "action", r.Action)
	b = appendList(b, "rules", r.Rules)
	b = appendList(b, "reasons", r.Reasons)
	b = appendField(b, "status", r.Status)
	b = appendField(b, "error", r.Error)
	if r.Usage != nil {
		b = append(b, `,"usage":{"input_tokens":`...)
		b = strconv.AppendInt(b, r.Usage.InputTokens, 10)
		b = append(b, `,"output_tokens":`...)
		b = strconv.AppendInt(b, r.Usage.OutputTokens, 10)
		b = append(b, '}')
	}
	b = appendField(b, "program", r.Program)
	b = appendField(b, "user", r.User)
	b = appendField(b, "op", r.Op)
	b = appendField(b, "subject", r.Subject)
	b = appendField(b, "file", r.File)
	b = appendField(b, "old_fingerprint", r.OldFingerprint)
	b = appendField(b, "new_fingerprint", r.NewFingerprint)
	if len(r.Steps) > 0 {
		// Once a run: encoding/json is fast enough.
		steps, err := json.Marshal(r.Steps)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"steps":`...)
		b = append(b, steps...)
	}
	b = appendField(b, "resume", r.Resume)
	if r.StartsRun {
		b = append(b, `,"starts_run":true`...)
	}
	b = appendField(b, "ends_run", r.EndsRun)
	b = appendField(b, "checkpoint", r.Checkpoint)
	if r.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, r.Count, 10)
	}
	b = appendField(b, "key", r.Key)
	b = appendField(b, "signature", r.Signature)
	return append(b, '}'), nil
}

// appendField appends `,"name":"value"`, or nothing for an empty value
// (omitempty).
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendList appends `,"name":[…]`, or nothing for an empty list
// (omitempty).
func appendList(b []byte, name string, values []string) []byte {
	if len(values) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string exactly as encoding/json writes
// it: printable ASCII other than the characters it escapes goes as it is;
// anything else is left to encoding/json. (ifc has its own: the trusted
// core imports no other Sluice package.)
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
