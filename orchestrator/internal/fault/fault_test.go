package fault

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// The error text the server logs is shortened to the system error it ends
// with, which errors.Is finds; the message names what, why and where.
func TestNewError(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		what, cause string
		errno       syscall.Errno
		want        string
	}{
		{"audit log", "write " + dir + "/jetstream/$G/streams/SLUICE_AUDIT/msgs/1.blk: no space left on device", syscall.ENOSPC,
			"audit log: cannot write: no space left on device (state directory " + dir + ", "},
		{"run state", "open " + dir + "/x: read-only file system", syscall.EROFS, "run state: cannot write: read-only file system (state directory "},
		{"run state", "write x: disk quota exceeded", syscall.EDQUOT, "run state: cannot write: disk quota exceeded ("},
		{"audit log", "something else broke", 0, "audit log: cannot write: something else broke ("},
	} {
		err := NewError(tc.what, dir, tc.cause)
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("NewError(%q) = %q, want it to start with %q", tc.cause, err, tc.want)
		}
		if tc.errno != 0 && !errors.Is(err, tc.errno) {
			t.Errorf("NewError(%q) is not %v", tc.cause, tc.errno)
		}
		if tc.errno == 0 && errors.Is(err, syscall.ENOSPC) {
			t.Errorf("NewError(%q) is ENOSPC", tc.cause)
		}
		if !strings.Contains(err.Error(), " free of ") {
			t.Errorf("NewError(%q) = %q: no free space of the directory", tc.cause, err)
		}
	}
}

func TestWhat(t *testing.T) {
	for stream, want := range map[string]string{"SLUICE_AUDIT": "audit log", "KV_SLUICE_RUNS": "run state",
		"KV_SLUICE_STEPS": "run state", "KV_SLUICE_APPROVALS": "run state", "KV_SLUICE_CAPS": "run state", "": "audit log and run state",
		// A named deployment's, even one named audit.
		"SLUICE_ACME_AUDIT": "audit log", "SLUICE_AUDIT_AUDIT": "audit log", "KV_SLUICE_AUDIT_RUNS": "run state",
		"KV_SLUICE_ACME_CAPS": "run state"} {
		if got := What(stream); got != want {
			t.Errorf("What(%q) = %q, want %q", stream, got, want)
		}
	}
}

// A refusal because the store is full names what could not be written;
// any other answer is left as it is.
func TestRefused(t *testing.T) {
	s := New(t.TempDir())
	full := &jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}
	err := s.Refused("run state", full)
	var fe *Error
	if !errors.As(err, &fe) || !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "run state: cannot write: the store is full (insufficient resources)") {
		t.Errorf("Refused(insufficient resources) = %v", err)
	}
	if !IsRefusal(full) || !IsRefusal(&jetstream.APIError{Code: 500, ErrorCode: 10047}) {
		t.Error("IsRefusal does not know the store is full")
	}
	other := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	if err := s.Refused("run state", other); err != other || IsRefusal(other) {
		t.Errorf("Refused(%v) = %v", other, err)
	}
	// A stream that could not be created on a full disk.
	create := &jetstream.APIError{Code: 500, ErrorCode: 10069, Description: "write " + s.Dir() + "/jetstream/$G/streams/SLUICE_AUDIT/meta.inf.tmp: no space left on device"}
	if err := s.Refused("audit log", create); !errors.Is(err, syscall.ENOSPC) ||
		!strings.HasPrefix(err.Error(), "audit log: cannot write: no space left on device (state directory "+s.Dir()) {
		t.Errorf("Refused(%v) = %v", create, err)
	}
	// On an external server, with no Store, the refusal is named too.
	var external *Store
	if err := external.Refused("audit log", full); err == nil ||
		err.Error() != "audit log: cannot write: the store is full (insufficient resources) (on the NATS server)" {
		t.Errorf("Refused on an external server = %v", err)
	}
	if err := s.Refused("run state", nil); err != nil {
		t.Errorf("Refused(nil) = %v", err)
	}
}

// Fail ends every bound context with the first failure as its cause; a
// nil Store never fails.
func TestFail(t *testing.T) {
	var none *Store
	none.Fail(errors.New("x"))
	if none.Err() != nil || none.Done() != nil {
		t.Fatal("a nil Store failed")
	}
	ctx, stop := none.Bind(context.Background())
	stop()
	if ctx.Err() != nil {
		t.Fatal("a nil Store ended a context")
	}

	s := New(t.TempDir())
	bound, stop := s.Bind(context.Background())
	defer stop()
	if s.Err() != nil || bound.Err() != nil {
		t.Fatal("failed before Fail")
	}
	first := NewError("audit log", s.Dir(), "no space left on device")
	s.Fail(first)
	s.Fail(errors.New("second"))
	<-s.Done()
	<-bound.Done()
	if s.Err() != first || context.Cause(bound) != first {
		t.Fatalf("Err = %v, cause = %v; want the first failure", s.Err(), context.Cause(bound))
	}
	// A context bound after the failure is ended already.
	late, stop2 := s.Bind(context.Background())
	defer stop2()
	if context.Cause(late) != first {
		t.Fatalf("a context bound after the failure: cause %v", context.Cause(late))
	}
}
