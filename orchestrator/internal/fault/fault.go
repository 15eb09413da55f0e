// Package fault carries a failure to write the state directory — a full
// disk, a read-only or broken file system — from the embedded NATS server,
// which sees it, to every write of the orchestrator that waits for the
// server's answer.
//
// The server does not answer a write it could not store: it logs the
// error, and refuses every later write to that stream until it restarts.
// A writer that only waited for the answer would wait for its timeout and
// fail with "context deadline exceeded", the cause left in the log. So the
// bus reports the logged error here ([Store.Fail]), and the audit log and
// the run state stop waiting at once ([Store.Done]) and fail with it
// ([Store.Err]); so does every write after it.
package fault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
)

// Store is the write health of one state directory. The zero value is not
// usable; a nil *Store never fails.
type Store struct {
	dir    string
	ctx    context.Context // ended, with the failure as its cause, by Fail
	cancel context.CancelCauseFunc
}

// New returns the Store of the state directory dir, not failed.
func New(dir string) *Store {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Store{dir: dir, ctx: ctx, cancel: cancel}
}

// Dir is the state directory.
func (s *Store) Dir() string {
	if s == nil {
		return ""
	}
	return s.dir
}

// Fail records err as the reason the state directory cannot be written.
// The first failure is kept; later ones are dropped.
func (s *Store) Fail(err error) {
	if s != nil && err != nil {
		s.cancel(err)
	}
}

// Done is closed once the store failed; nil (never ready) for a nil Store.
func (s *Store) Done() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.ctx.Done()
}

// Err is the failure, or nil.
func (s *Store) Err() error {
	if s == nil || s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Bind returns ctx, ended as well when the store fails, with the failure
// as its cause (context.Cause). Call stop when done with it.
func (s *Store) Bind(ctx context.Context) (_ context.Context, stop func()) {
	if s == nil {
		return ctx, func() {}
	}
	c, cancel := context.WithCancelCause(ctx)
	if err := s.Err(); err != nil {
		cancel(err) // now, not in AfterFunc's goroutine
		return c, func() {}
	}
	unhook := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	return c, func() { unhook(); cancel(nil) }
}

// Error is a write to the state directory that failed.
type Error struct {
	// What could not be written: "audit log" or "run state".
	What string
	// Dir is the state directory; empty for a store on an external
	// NATS server.
	Dir string
	// Cause as the server reported it, e.g. "no space left on device".
	Cause string
	// Errno is the system error Cause names, 0 if none (errors.Is
	// matches it: errors.Is(err, syscall.ENOSPC)).
	Errno syscall.Errno
	// Free describes the space left in Dir ("0 B free of 4.0 MiB"),
	// when it could be read.
	Free string
}

func (e *Error) Error() string {
	where := "state directory " + e.Dir
	if e.Dir == "" {
		where = "on the NATS server" // an external one: its store is not ours to see
	}
	if e.Free != "" {
		where += ", " + e.Free
	}
	return fmt.Sprintf("%s: cannot write: %s (%s)", e.What, e.Cause, where)
}

// Unwrap returns the system error, when the cause names one.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// errnos are the system errors a write to the store fails with, by the
// text the server logs for them.
var errnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EIO, syscall.EACCES, syscall.EPERM, syscall.EFBIG}

// NewError returns the Error of a write of what to dir that failed with cause,
// the error text the server logged (e.g. "write /x/1.blk: no space left on
// device"): the cause is shortened to the system error it ends with, and
// the free space of dir is added.
func NewError(what, dir, cause string) *Error {
	e := &Error{What: what, Dir: dir, Cause: strings.TrimSpace(cause)}
	for _, n := range errnos {
		if strings.HasSuffix(e.Cause, n.Error()) {
			e.Cause, e.Errno = n.Error(), n
			break
		}
	}
	e.Free = freeSpace(dir)
	return e
}

// FromOS returns err as an Error naming what and dir when it is a system
// error writing a file of the state directory (for example the API
// endpoint sluice up publishes there), and err otherwise.
func (s *Store) FromOS(what string, err error) error {
	var n syscall.Errno
	if err == nil || !errors.As(err, &n) {
		return err
	}
	for _, known := range errnos {
		if n == known {
			return NewError(what, s.Dir(), err.Error())
		}
	}
	return err
}

// What names the store a JetStream stream belongs to: the audit log (the
// stream SLUICE_AUDIT, or SLUICE_<NAME>_AUDIT of a named deployment), or
// the run state (the buckets of runs, calls, approvals and budgets, whose
// streams are KV_SLUICE_…); both for no stream (JetStream as a whole
// stopped).
func What(stream string) string {
	switch {
	case stream == "":
		return "audit log and run state"
	case strings.HasPrefix(stream, "SLUICE_") && strings.HasSuffix(stream, "_AUDIT"):
		return "audit log"
	}
	return "run state"
}

// Refused classifies an error the server answered a write of what with:
// a refusal because its store is full (JetStream's "insufficient
// resources", when the store reached the limit the server set from the
// free space of the disk at start), or an answer that reports a system
// error writing its files (a stream that could not be created on a full
// disk), becomes an Error naming what and the state directory; anything
// else is returned as it is.
func (s *Store) Refused(what string, err error) error {
	dir := s.Dir()
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return err
	}
	for _, n := range errnos {
		if strings.HasSuffix(api.Description, ": "+n.Error()) {
			return NewError(what, dir, api.Description)
		}
	}
	switch api.ErrorCode {
	case jsErrCodeInsufficientResources, jsErrCodeStorageResourcesExceeded:
		e := &Error{What: what, Dir: dir, Cause: "the store is full (" + api.Description + ")", Errno: syscall.ENOSPC}
		e.Free = freeSpace(dir)
		return e
	}
	return err
}

// The server's answers to a write when its store (insufficient
// resources) or an account's storage limit is full.
const (
	jsErrCodeInsufficientResources    jetstream.ErrorCode = 10023
	jsErrCodeStorageResourcesExceeded jetstream.ErrorCode = 10047
)

// IsRefusal says whether err is a write the server refused because its
// store is full: trying it again does not help.
func IsRefusal(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jsErrCodeInsufficientResources || api.ErrorCode == jsErrCodeStorageResourcesExceeded)
}
