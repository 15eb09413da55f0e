// Package audit appends the record of everything the orchestrator decides
// and does to a JetStream stream: runs, calls with their labels, decisions
// with the rules behind them, results, and refusals by the bus. A record is
// appended, and acknowledged by the stream, before the action it describes.
//
// Records carry labels, names, rules and ids — never argument values, tool
// output, prompts or secrets.
package audit

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/sluicehq/sluice/ifc"
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
	// KindAnswer is a person's answer to a held call.
	KindAnswer    = "answer"
	KindViolation = "violation"
	KindEgress    = "egress"
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
	// Violation fields: the NATS user and what it was refused.
	User    string `json:"user,omitempty"`
	Op      string `json:"op,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// StreamName is the JetStream stream holding the audit log.
const StreamName = "SLUICE_AUDIT"

// Log appends records.
type Log struct {
	js      jetstream.JetStream
	subject string

	mu   sync.Mutex // serializes appends, so the chain has one order
	last string     // hash of the last stored record
}

// Open creates (or opens) the audit stream under prefix.
func Open(ctx context.Context, nc *nats.Conn, prefix string) (*Log, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	subject := prefix + ".audit"
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      StreamName,
		Subjects:  []string{subject},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("open audit stream: %w", err)
	}
	l := &Log{js: js, subject: subject}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("open audit stream: %w", err)
	}
	if m, err := st.GetLastMsgForSubject(ctx, subject); err == nil {
		l.last = hash(m.Data)
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("read the last audit record: %w", err)
	}
	return l, nil
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// NewID returns a ULID with entropy from crypto/rand, so that no id can be
// guessed.
func NewID() string { return ulid.MustNew(ulid.Now(), rand.Reader).String() }

// Append writes r and waits until the stream has stored it.
func (l *Log) Append(ctx context.Context, r Record) error {
	r.V = Version
	if r.ID == "" {
		r.ID = NewID()
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	// The chain needs one order: prev is taken and the record handed to
	// the stream under the lock, in order on one connection. The wait for
	// the stream's acknowledgement happens outside it, so that appends of
	// concurrent calls overlap. A record that is not stored leaves a break
	// in the chain that Verify reports.
	l.mu.Lock()
	r.Prev = l.last
	b, err := json.Marshal(r)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	msg := nats.NewMsg(l.subject)
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	ack, err := l.js.PublishMsgAsync(msg)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("append audit record: %w", err)
	}
	l.last = hash(b)
	l.mu.Unlock()
	select {
	case <-ack.Ok():
		return nil
	case err := <-ack.Err():
		return fmt.Errorf("append audit record: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("append audit record: %w", ctx.Err())
	}
}

// Records reads the whole log, oldest first.
func (l *Log) Records(ctx context.Context) ([]Record, error) {
	st, err := l.js.Stream(ctx, StreamName)
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
// stored, so that Verify can check the chain.
func (l *Log) Export(ctx context.Context, w io.Writer) (int, error) {
	st, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
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

// Verify checks an export: every line is a record whose prev is the hash
// of the line before it. It returns the number of records, or an error
// naming the first line that breaks the chain.
func Verify(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	prev := ""
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		n++
		var rec struct {
			Prev *string `json:"prev"`
			V    int     `json:"v"`
		}
		if err := json.Unmarshal(line, &rec); err != nil || rec.V == 0 {
			return n - 1, fmt.Errorf("line %d: not an audit record", n)
		}
		got := ""
		if rec.Prev != nil {
			got = *rec.Prev
		}
		if got != prev {
			if n == 1 {
				return 0, fmt.Errorf("line 1: the chain does not start here (records before it were dropped)")
			}
			return n - 1, fmt.Errorf("line %d: the chain is broken: line %d was changed, or records between them were dropped or reordered", n, n-1)
		}
		prev = hash(line)
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, nil
}
