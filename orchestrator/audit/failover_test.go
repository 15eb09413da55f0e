package audit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The server under the log restarts while records are in flight: tries
// that were lost, refused or whose answer was lost are sent again, no
// record is stored twice or out of order, every append succeeds, and the
// export verifies.
func TestAppendsSurviveAServerRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir()}
	start := func() *server.Server {
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		return s
	}
	srv := start()
	defer func() { srv.Shutdown() }()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	const writers, each = 8, 60
	var stored atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := log.Append(ctx, Record{Kind: KindResult, RunID: strconv.Itoa(w), Step: strconv.Itoa(i)}); err != nil {
					errs <- fmt.Errorf("writer %d, record %d: %w", w, i, err)
					continue
				}
				stored.Add(1)
			}
		}()
	}
	// Restart the server once a sixth of the records are stored, with the
	// rest on their way.
	for stored.Load() < writers*each/6 {
		select {
		case <-ctx.Done():
			t.Fatal("records were not stored")
		case <-time.After(time.Millisecond):
		}
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = start()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var buf bytes.Buffer
	n, err := log.Export(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("%d records stored, want %d", n, writers*each)
	}
	if err := log.Append(ctx, Record{Kind: KindRunFinished}); err != nil {
		t.Fatalf("append after the restart: %v", err)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, log)), testPub); err != nil || v.Records != n+2 {
		t.Fatalf("verify: %+v of %d records, %v", v, n+2, err)
	}
}
