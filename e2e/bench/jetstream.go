package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/bus"
)

// jetstreamOps are the durable operations a mediated call is made of, each
// timed alone on an embedded bus over the orchestrator's in-process
// connection: what the hop figures add up.
var jetstreamOps = []string{
	"js_audit_append",         // one audit record appended and acknowledged (Append)
	"js_audit_pipelined_pair", // two records published, then both waited for (Publish, Publish, Wait, Wait)
	"js_kv_put",               // a key-value put (run state, a completed call)
	"js_kv_get",               // a key-value get of a missing key (a call not done before)
	"js_kv_purge",             // one key purged
	"js_kv_list_keys",         // the keys under a prefix listed (a consumer created and deleted)
	"js_stream_purge_subject", // every key under a prefix purged by one stream purge request
}

// jetstreamFigures times each of jetstreamOps n times and prints the
// medians.
func jetstreamFigures(res *results, dir string) error {
	const n = 2000
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := bus.Start(bus.Config{StoreDir: dir})
	if err != nil {
		return err
	}
	defer b.Shutdown()
	nc, err := b.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	const bucket = "BENCH_STEPS"
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	// A bucket of its own for the stream purge, which leaves no purge
	// markers behind, as a store that drops a finished run's keys this
	// way would hold only those of unfinished runs.
	const bucket2 = "BENCH_STEPS_2"
	kv2, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket2, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, "KV_"+bucket2)
	if err != nil {
		return err
	}
	l, err := audit.Open(ctx, nc, "bench")
	if err != nil {
		return err
	}
	value := make([]byte, 600)
	times := map[string][]float64{}
	timed := func(name string, f func() error) error {
		t := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		times[name] = append(times[name], float64(time.Since(t).Nanoseconds())/1e3)
		return nil
	}
	for i := range n {
		run := "r" + strconv.Itoa(i)
		rec := audit.Record{Kind: audit.KindDecision, RunID: run, Step: "s1", Tool: "echo.echo"}
		put := func(kv jetstream.KeyValue, key string) func() error {
			return func() error { _, err := kv.Put(ctx, key, value); return err }
		}
		ops := []struct {
			name     string
			setup, f func() error // setup is not timed
		}{
			{"js_kv_put", nil, put(kv, run+".s1")},
			{"js_kv_get", nil, func() error {
				if _, err := kv.Get(ctx, run+".s2"); err != jetstream.ErrKeyNotFound {
					return fmt.Errorf("want not found, got %v", err)
				}
				return nil
			}},
			{"js_audit_append", nil, func() error { return l.Append(ctx, rec) }},
			{"js_audit_pipelined_pair", nil, func() error {
				p1, err := l.Publish(rec)
				if err != nil {
					return err
				}
				p2, err := l.Publish(rec)
				if err != nil {
					return err
				}
				if err := p1.Wait(ctx); err != nil {
					return err
				}
				return p2.Wait(ctx)
			}},
			{"js_kv_list_keys", nil, func() error {
				keys, err := kv.ListKeysFiltered(ctx, run+".>")
				if err != nil {
					return err
				}
				for range keys.Keys() {
				}
				return nil
			}},
			{"js_kv_purge", nil, func() error { return kv.Purge(ctx, run+".s1") }},
			{"js_stream_purge_subject", put(kv2, run+".s1"), func() error {
				return st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket2+"."+run+".>"))
			}},
		}
		for _, op := range ops {
			if op.setup != nil {
				if err := op.setup(); err != nil {
					return fmt.Errorf("%s: %w", op.name, err)
				}
			}
			if err := timed(op.name, op.f); err != nil {
				return err
			}
		}
	}
	for _, name := range jetstreamOps {
		res.fig(name, median(times[name]), "us")
	}
	return nil
}
