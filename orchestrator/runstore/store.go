// Package runstore keeps the state of unfinished runs in JetStream
// key-value buckets, so that a run outlives the orchestrator process that
// started it: each run as started (its flow, inputs and phase), the output
// of each completed call with its labels, and every held call
// (approval.Approval). Writes go through jsretry (again while a cluster
// elects a leader) and stop at once, with the cause, when the state
// directory cannot be written (fault). Writes on a run's path are handed
// to JetStream without waiting (Write) and waited for where the engine
// must: before a call is delivered.
package runstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/jsretry"
	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
	"github.com/sluicehq/sluice/schemas"
)

// The JetStream key-value buckets a run's state lives in, so that a run
// outlives the orchestrator process that started it, as the default
// deployment names them; another deployment's are named by
// schemas.StoreName (SLUICE_<NAME>_RUNS, …).
const (
	// RunsBucket holds each unfinished run: its flow as loaded, its
	// inputs and whether it is running or held. A finished run's entry is
	// removed; the audit log keeps its story.
	RunsBucket = "SLUICE_RUNS"
	// StepsBucket holds the output of each completed call of an unfinished
	// run, with its labels, and the approval a held call waits for, under
	// the call's idempotency key.
	StepsBucket = "SLUICE_STEPS"
	// ApprovalsBucket holds every held call (Approval), by approval id.
	ApprovalsBucket = "SLUICE_APPROVALS"
	// RememberedBucket holds the answers people asked to be remembered
	// (approval.Remembered), by id.
	RememberedBucket = "SLUICE_REMEMBERED"
	// EndorsedBucket holds the values people endorsed for the rest of an
	// unfinished run (approval.Endorsement), by run id and id; a finished
	// run's are removed with it.
	EndorsedBucket = "SLUICE_ENDORSED"
)

// Phase is where an unfinished run stands, as kept in RunsBucket.
type Phase string

// The phases of an unfinished run.
const (
	// Running: under way, or it was when its orchestrator stopped; the
	// next orchestrator resumes it.
	Running Phase = "running"
	// Held: waiting for a person's answer to a held call.
	Held Phase = "held"
	// Interrupted: a person interrupted it; it resumes only when asked.
	Interrupted Phase = "interrupted"
)

// Store is the engine's run state. Every request to it is made through
// jsretry.Do: again while a cluster electing a leader explains its failure.
// Each may be repeated: puts and purges are, and Create and Update check
// what an earlier try wrote. A write stops waiting, and fails with the
// cause, once the state directory cannot be written (fault).
type Store struct {
	js                     jetstream.JetStream
	runs, steps, approvals jetstream.KeyValue
	remembered, endorsed   jetstream.KeyValue
	fault                  *fault.Store
	// stepsName and endorsedName are the names of the steps and endorsed
	// buckets (the deployment's).
	stepsName, endorsedName string

	viewMu sync.Mutex
	// approvalsView is the one watch of the approvals bucket, started by
	// the first read that needs it.
	approvalsView *approvalsView
	hooks         viewHooks

	remMu sync.Mutex
	// rem is the remembered answers as last read, at the bucket's last
	// sequence then (Remembered).
	rem struct {
		all  []approval.Remembered
		last uint64
	}
}

// do makes the write op through jsretry.Do, and ends it at once, with the
// cause, when the state directory cannot be written.
func (s *Store) do(ctx context.Context, op func(context.Context) error) error {
	ctx, stop := s.fault.Bind(ctx)
	defer stop()
	return s.fault.Refused("run state", jsretry.Do(ctx, op))
}

// Open opens (creating them when missing) the buckets of the run state of
// deployment ("" for the default one) on the bus nc, with replicas copies
// of each on a cluster; f, when set, reports that the state directory
// cannot be written.
func Open(ctx context.Context, nc *nats.Conn, deployment string, replicas int, f *fault.Store) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	open := func(name, desc string) (kv jetstream.KeyValue, err error) {
		err = jsretry.Do(ctx, func(ctx context.Context) error {
			kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: name, Description: desc, History: 1,
				Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
			})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("open the %s bucket: %w", name, f.Refused("run state", err))
		}
		return kv, nil
	}
	s := &Store{js: js, fault: f, stepsName: schemas.StoreName(deployment, "STEPS"), endorsedName: schemas.StoreName(deployment, "ENDORSED")}
	if s.runs, err = open(schemas.StoreName(deployment, "RUNS"), "unfinished runs"); err != nil {
		return nil, err
	}
	if s.steps, err = open(s.stepsName, "outputs of completed calls of unfinished runs, and held calls"); err != nil {
		return nil, err
	}
	if s.approvals, err = open(schemas.StoreName(deployment, "APPROVALS"), "calls held for a person"); err != nil {
		return nil, err
	}
	if s.remembered, err = open(schemas.StoreName(deployment, "REMEMBERED"), "answers people asked to be remembered, with their scope and uses"); err != nil {
		return nil, err
	}
	if s.endorsed, err = open(s.endorsedName, "values people endorsed for the rest of an unfinished run"); err != nil {
		return nil, err
	}
	return s, nil
}

// RunRecord is an unfinished run.
type RunRecord struct {
	ID     string          `json:"id"`
	Flow   string          `json:"flow"`
	File   string          `json:"file"`
	Source []byte          `json:"source"`
	Inputs json.RawMessage `json:"inputs"`
	// InputLabel is the label of the inputs when it is not the user's
	// (a flow an MCP client started carries its session's label).
	InputLabel *ifc.Label `json:"input_label,omitempty"`
	Status     Phase      `json:"status"`
	Created    time.Time  `json:"created"`
	// StoppedAt are the steps an interrupted run stopped at.
	StoppedAt []string `json:"stopped_at,omitempty"`
}

// CallRecord is a completed call's result and output with its labels, or
// the approval a held call waits for.
type CallRecord struct {
	Result     *schemas.StepResult  `json:"result,omitempty"`
	Output     json.RawMessage      `json:"output,omitempty"`
	Base       ifc.Label            `json:"base"`
	Fields     map[string]ifc.Label `json:"fields,omitempty"`
	ApprovalID string               `json:"approval_id,omitempty"`
	// Args of a completed call, so that caps over the run count it.
	Args map[string]any `json:"args,omitempty"`
	// Sent is the message id of a try of a call sent at most once
	// (gate.AtMostOnce), recorded before the try was sent.
	Sent string `json:"sent,omitempty"`
}

// CallKey is the StepsBucket key of a call: its idempotency key, which
// names the run, the step and the element or turn.
func CallKey(idem string) string { return strings.ReplaceAll(idem, "/", ".") }

func (s *Store) PutRun(ctx context.Context, rec *RunRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := s.do(ctx, func(ctx context.Context) error { _, err := s.runs.Put(ctx, rec.ID, b); return err }); err != nil {
		return fmt.Errorf("record run %s: %w", rec.ID, err)
	}
	return nil
}

func (s *Store) GetRun(ctx context.Context, id string) (*RunRecord, error) {
	var e jetstream.KeyValueEntry
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) { e, err = s.runs.Get(ctx, id); return err })
	if err != nil {
		return nil, err
	}
	var rec RunRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("run %s: malformed record: %w", id, err)
	}
	return &rec, nil
}

// Unfinished lists the runs the store holds.
func (s *Store) Unfinished(ctx context.Context) ([]*RunRecord, error) {
	var out []*RunRecord
	err := each(ctx, s.runs, "", func(b []byte) error {
		var rec RunRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return err
		}
		out = append(out, &rec)
		return nil
	})
	return out, err
}

// Finish forgets a finished run: its calls and the values endorsed for
// it, with one purge of each stream by subject (no marker is written per
// key), and its record.
func (s *Store) Finish(ctx context.Context, id string) error {
	var errs []error
	for _, bucket := range []string{s.stepsName, s.endorsedName} {
		if err := s.purgeRun(ctx, bucket, id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.do(ctx, func(ctx context.Context) error { return s.runs.Purge(ctx, id) }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// purgeRun drops the keys of run id from bucket, with one purge of its
// stream by subject.
func (s *Store) purgeRun(ctx context.Context, bucket, id string) error {
	return s.do(ctx, func(ctx context.Context) error {
		str, err := s.js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return err
		}
		return str.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+id+".>"))
	})
}

func (s *Store) PutCall(ctx context.Context, idem string, rec *CallRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := s.do(ctx, func(ctx context.Context) error { _, err := s.steps.Put(ctx, CallKey(idem), b); return err }); err != nil {
		return fmt.Errorf("record call %s: %w", idem, err)
	}
	return nil
}

// Sending records that a try of the call idem is being sent, under token
// (the try's message id), before it is, keeping what the call's record
// holds (a held call's approval). It returns the token of an earlier try
// when one was recorded, or "completed" when the call's result was: that
// try may have taken effect, and nothing is written.
func (s *Store) Sending(ctx context.Context, idem, token string) (earlier string, err error) {
	key := CallKey(idem)
	// Most calls have no record yet: the mark is created. A held call's
	// record (its approval) is updated; the loop covers another writer
	// in between, which is not expected, and is bounded.
	err = s.create(ctx, s.steps, key, &CallRecord{Sent: token}, "call "+idem)
	for range 8 {
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return "", err
		}
		e, rerr := s.callEntry(ctx, key)
		if rerr != nil {
			return "", fmt.Errorf("read call %s: %w", idem, rerr)
		}
		if e == nil {
			// Removed in between: created again.
			err = s.create(ctx, s.steps, key, &CallRecord{Sent: token}, "call "+idem)
			continue
		}
		var rec CallRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return "", fmt.Errorf("call %s: malformed record: %w", idem, err)
		}
		switch {
		case rec.Sent != "":
			return rec.Sent, nil
		case rec.Result != nil:
			return "completed", nil
		}
		rec.Sent = token
		err = s.update(ctx, s.steps, key, &rec, e.Revision())
	}
	return "", fmt.Errorf("record call %s as sent: its record kept changing", idem)
}

// callEntry reads the record of the call under key, or nil when there is
// none.
func (s *Store) callEntry(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	var e jetstream.KeyValueEntry
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) { e, err = s.steps.Get(ctx, key); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	return e, err
}

// GetCall returns the record of a call, or nil when there is none.
func (s *Store) GetCall(ctx context.Context, idem string) (*CallRecord, error) {
	var e jetstream.KeyValueEntry
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) { e, err = s.steps.Get(ctx, CallKey(idem)); return err })
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read call %s: %w", idem, err)
	}
	var rec CallRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("call %s: malformed record: %w", idem, err)
	}
	return &rec, nil
}

// GetApproval returns an approval and its revision.
func (s *Store) GetApproval(ctx context.Context, id string) (*approval.Approval, uint64, error) {
	return get[approval.Approval](ctx, s.approvals, id, "approval")
}

// CreateApproval stores a new approval.
func (s *Store) CreateApproval(ctx context.Context, a *approval.Approval) error {
	return s.create(ctx, s.approvals, a.ID, a, "approval "+a.ID)
}

// UpdateApproval writes a only if the stored approval is still at
// revision rev: two answers, or an answer and a use, cannot both win.
func (s *Store) UpdateApproval(ctx context.Context, a *approval.Approval, rev uint64) error {
	return s.update(ctx, s.approvals, a.ID, a, rev)
}

// AllApprovals lists every approval in the bucket.
func (s *Store) AllApprovals(ctx context.Context) ([]approval.Approval, error) {
	return all[approval.Approval](ctx, s.approvals)
}

// PendingApprovals lists the approvals waiting for a person, whole, by
// id. Which are pending is read from the store's view of the approvals,
// once it has applied every write stored when PendingApprovals began, and
// only those are read, by key: not every approval the bucket keeps,
// answered ones included, which grow with every call ever held. One
// answered between the two reads is left out. When the pending are half
// the approvals kept or more, one pass over the bucket reads them for
// less than a read each, and so it does when the view does not catch up.
func (s *Store) PendingApprovals(ctx context.Context) ([]approval.Approval, error) {
	return fromView(ctx, s, func(v *approvalsView, last, kept uint64) ([]approval.Approval, bool, error) {
		ids, ok, err := v.pendingIDs(ctx, last)
		if !ok || err != nil || 2*uint64(len(ids)) >= kept {
			return nil, false, err
		}
		out, err := s.readPending(ctx, ids)
		return out, true, err
	}, func() ([]approval.Approval, error) { return s.pendingScan(ctx) })
}

// pendingReaders bounds the approvals PendingApprovals reads at once.
const pendingReaders = 8

// readPending reads the approvals ids, in order, leaving out those no
// longer pending (or gone).
func (s *Store) readPending(ctx context.Context, ids []string) ([]approval.Approval, error) {
	read := make([]*approval.Approval, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(pendingReaders, len(ids)) {
		wg.Go(func() {
			for i := range next {
				a, _, err := s.GetApproval(ctx, ids[i])
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					continue
				}
				read[i], errs[i] = a, err
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]approval.Approval, 0, len(ids))
	for _, a := range read {
		if a != nil && a.Status == approval.Pending {
			out = append(out, *a)
		}
	}
	return out, nil
}

// pendingScan is PendingApprovals reading every approval in the bucket,
// and decoding in full only those pending.
func (s *Store) pendingScan(ctx context.Context) ([]approval.Approval, error) {
	var out []approval.Approval
	err := each(ctx, s.approvals, "", func(b []byte) error {
		var head struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return err
		}
		if head.Status != approval.Pending {
			return nil
		}
		var a approval.Approval
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	slices.SortFunc(out, func(a, b approval.Approval) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// OpenApproval is an approval still open, pending or approved and not yet
// used, as OpenApprovalsOf lists it: its id, run and status alone.
type OpenApproval struct{ ID, RunID, Status string }

// OpenApprovalsOf lists the open approvals of run (pending, or approved and
// not yet used): the held calls a cancel withdraws. Like ApprovedOf, they
// are read from the store's watch of the bucket once it has applied every
// write stored when OpenApprovalsOf began, not by reading every approval;
// the bucket is scanned only when the view does not catch up.
func (s *Store) OpenApprovalsOf(ctx context.Context, run string) ([]OpenApproval, error) {
	return fromView(ctx, s, func(v *approvalsView, last, _ uint64) ([]OpenApproval, bool, error) {
		return v.openOf(ctx, run, last)
	}, func() ([]OpenApproval, error) { return s.openOfScan(ctx, run) })
}

// openOfScan is OpenApprovalsOf reading every approval in the bucket.
func (s *Store) openOfScan(ctx context.Context, run string) ([]OpenApproval, error) {
	var scanned []OpenApproval
	err := each(ctx, s.approvals, "", func(b []byte) error {
		var a struct {
			ID     string `json:"id"`
			RunID  string `json:"run_id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		if a.RunID == run && (a.Status == approval.Pending || a.Status == approval.Approved) {
			scanned = append(scanned, OpenApproval(a))
		}
		return nil
	})
	return scanned, err
}

// ApprovedOf returns the values of the arguments of the calls of tool a
// person approved (approved, or approved and used), each value once: what
// a new held call's arguments are compared with for lookalikes. They are read
// from the store's watch of the bucket (approvalsView) once it has applied
// every write stored when ApprovedOf began, whatever orchestrator made it:
// one request for the bucket's last sequence, not a read of every approval.
func (s *Store) ApprovedOf(ctx context.Context, tool string) (*approval.ApprovedValues, error) {
	return fromView(ctx, s, func(v *approvalsView, last, _ uint64) (*approval.ApprovedValues, bool, error) {
		return v.approvedOf(ctx, tool, last)
	}, func() (*approval.ApprovedValues, error) { return s.approvedOfScan(ctx, tool) })
}

// fromView answers a read from the store's view of the approvals, once
// the view has applied every write the bucket held when the read began
// (one request for its last sequence, and how many approvals it keeps);
// when the view does not catch up, its watch ended, or read declines, from
// scan, which reads the bucket itself.
func fromView[T any](ctx context.Context, s *Store, read func(v *approvalsView, last, kept uint64) (T, bool, error), scan func() (T, error)) (T, error) {
	var none T
	v, err := s.view(ctx)
	if err != nil {
		return none, err
	}
	last, kept, err := bucketState(ctx, s.approvals)
	if err != nil {
		return none, fmt.Errorf("read the approvals' last write: %w", err)
	}
	out, ok, err := read(v, last, kept)
	if ok || err != nil {
		return out, err
	}
	return scan()
}

// approvedOfScan is ApprovedOf reading every approval in the bucket, and
// decoding in full only the approved calls of tool.
func (s *Store) approvedOfScan(ctx context.Context, tool string) (*approval.ApprovedValues, error) {
	out := &approval.ApprovedValues{}
	err := each(ctx, s.approvals, "", func(b []byte) error {
		var head struct {
			Tool   string `json:"tool"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return err
		}
		if head.Tool != tool || head.Status != approval.Approved && head.Status != approval.Used {
			return nil
		}
		var a struct {
			Args map[string]any `json:"args"`
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		out.Add(a.Args)
		return nil
	})
	return out, err
}

// get reads the record key of kv (what names its kind in errors) and its
// revision.
func get[T any](ctx context.Context, kv jetstream.KeyValue, key, what string) (*T, uint64, error) {
	var e jetstream.KeyValueEntry
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) { e, err = kv.Get(ctx, key); return err })
	if err != nil {
		return nil, 0, err
	}
	v := new(T)
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return nil, 0, fmt.Errorf("%s %s: malformed record: %w", what, key, err)
	}
	return v, e.Revision(), nil
}

// create stores v as the new key of kv; a try whose answer was lost but
// that was stored counts as done. what names the record in errors.
func (s *Store) create(ctx context.Context, kv jetstream.KeyValue, key string, v any, what string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tries := 0
	err = s.do(ctx, func(ctx context.Context) error {
		tries++
		_, err := kv.Create(ctx, key, b)
		if tries > 1 && errors.Is(err, jetstream.ErrKeyExists) {
			return s.wrote(ctx, kv, key, b)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", what, err)
	}
	return nil
}

// update writes v as key of kv only if the stored record is still at
// revision rev.
func (s *Store) update(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tries := 0
	return s.do(ctx, func(ctx context.Context) error {
		tries++
		_, err := kv.Update(ctx, key, b, rev)
		if tries > 1 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			// An earlier try may have been stored, its answer lost.
			return s.wrote(ctx, kv, key, b)
		}
		return err
	})
}

// wrote returns nil when key holds b: a write whose answer was lost did
// happen. Otherwise it returns ErrKeyRevisionMismatch.
func (s *Store) wrote(ctx context.Context, kv jetstream.KeyValue, key string, b []byte) error {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return err
	}
	if !bytes.Equal(e.Value(), b) {
		return jetstream.ErrKeyRevisionMismatch
	}
	return nil
}

// all reads every record of kv.
func all[T any](ctx context.Context, kv jetstream.KeyValue) ([]T, error) {
	var out []T
	err := each(ctx, kv, "", func(b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// each calls fn with the value of every key of kv (matching filter, when
// set), reading them in one pass of a watcher rather than a request per key.
func each(ctx context.Context, kv jetstream.KeyValue, filter string, fn func([]byte) error) error {
	var w jetstream.KeyWatcher
	var err error
	if filter == "" {
		w, err = kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	} else {
		w, err = kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	}
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watcher stopped")
			}
			if e == nil {
				return nil // every current value was delivered
			}
			if err := fn(e.Value()); err != nil {
				return fmt.Errorf("%s %s: %w", kv.Bucket(), e.Key(), err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
