package worker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natscreds"
	"github.com/sluicehq/sluice/internal/natscreds/credstest"
)

// The credentials file is removed once read, and the connection keeps the
// credential in memory (a reconnect needs it).
func TestConnectRemovesTheCredentialsFile(t *testing.T) {
	creds, _ := credstest.UserCreds(t, time.Hour)
	f := filepath.Join(t.TempDir(), "w.creds")
	if err := os.WriteFile(f, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on port 1: the connection fails after the file is read.
	if _, err := Connect(ConnectConfig{URL: "nats://127.0.0.1:1", CredsFile: f, Worker: "w"}); err == nil {
		t.Fatal("connected to nothing")
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Fatalf("credentials file still there: %v", err)
	}
}

func TestRenewAt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		timeout time.Duration
		before  time.Duration // how long before expiry the worker stops
	}{
		{name: "long ttl: timeout plus margin", ttl: time.Hour, timeout: 30 * time.Second, before: 35 * time.Second},
		{name: "short ttl: half its life", ttl: time.Minute, timeout: 50 * time.Second, before: 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds, _ := credstest.UserCreds(t, tc.ttl)
			opt, err := natscreds.Option(creds)
			if err != nil {
				t.Fatal(err)
			}
			nc := &nats.Conn{}
			if err := opt(&nc.Opts); err != nil {
				t.Fatal(err)
			}
			at, ok := renewAt(nc, tc.timeout)
			if !ok {
				t.Fatal("no renewal time for an expiring JWT")
			}
			want := time.Now().Add(tc.ttl - tc.before)
			if d := at.Sub(want); d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("renew at %s, want about %s", at, want)
			}
		})
	}
	if _, ok := renewAt(&nats.Conn{}, time.Second); ok {
		t.Error("a connection without a JWT has a renewal time")
	}
}
