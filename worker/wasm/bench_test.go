package wasm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/worker"
	"github.com/sluicehq/sluice/worker/wasm"
)

// The benchmarks compare a call through [wasm.Module] with raw wazero
// doing the same work on the same Go-built reactor (the echo tool: decode
// the envelope, encode the output), with the same runtime configuration
// (close on context done, crypto/rand, WASI, the sluice host module).
//
//	go test -run '^$' -bench . -count 5 ./worker/wasm
//
// BenchmarkCallWarm and BenchmarkRawWarm time one call on an instance
// made ahead of time (p50 and p99 are reported); BenchmarkCallRefill and
// BenchmarkRawFresh measure calls per second when every call needs a new
// instance: the module's pool refills in the background while raw wazero
// instantiates in the loop.

const echoArgs = `{"text": "hello"}`

func benchModule(b *testing.B, pool int) *wasm.Module {
	return newModule(b, manifest(b, reactorWasm, reactorTools, ""), pool)
}

func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkCallWarm: one call, the pool holding a ready instance.
func BenchmarkCallWarm(b *testing.B) {
	mod := benchModule(b, 1)
	ctx := context.Background()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for mod.Ready() == 0 {
			time.Sleep(20 * time.Microsecond)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := mod.Call(ctx, worker.NewCall("echo", json.RawMessage(echoArgs), nil)); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, d)
}

// BenchmarkCallRefill: calls back to back; the pool refills while they run
// and a call that finds it empty instantiates for itself.
func BenchmarkCallRefill(b *testing.B) {
	mod := benchModule(b, wasm.DefaultPool)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := mod.Call(ctx, worker.NewCall("echo", json.RawMessage(echoArgs), nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b)
}

// BenchmarkCallRefillParallel: as BenchmarkCallRefill, from GOMAXPROCS
// goroutines.
func BenchmarkCallRefillParallel(b *testing.B) {
	mod := benchModule(b, wasm.DefaultPool)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := mod.Call(ctx, worker.NewCall("echo", json.RawMessage(echoArgs), nil)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b)
}

// raw is wazero configured as package wasm configures it, without the
// package.
type raw struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	cfg      wazero.ModuleConfig
	envelope []byte
}

func newRaw(b *testing.B) *raw {
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		b.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true))
	b.Cleanup(func() { rt.Close(ctx); cache.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	nop := api.GoModuleFunc(func(context.Context, api.Module, []uint64) {})
	i32 := api.ValueTypeI32
	if _, err := rt.NewHostModuleBuilder("sluice").
		NewFunctionBuilder().WithGoModuleFunction(nop, []api.ValueType{i32, i32}, []api.ValueType{i32}).Export("http").
		NewFunctionBuilder().WithGoModuleFunction(nop, []api.ValueType{i32, i32}, []api.ValueType{i32}).Export("http_result").
		NewFunctionBuilder().WithGoModuleFunction(nop, []api.ValueType{i32, i32, i32}, nil).Export("log").
		Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(reactorWasm)
	if err != nil {
		b.Fatal(err)
	}
	compiled, err := rt.CompileModule(experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0)), bin)
	if err != nil {
		b.Fatal(err)
	}
	env, _ := json.Marshal(map[string]any{"tool": "echo", "args": json.RawMessage(echoArgs)})
	return &raw{rt: rt, compiled: compiled, envelope: env,
		cfg: wazero.NewModuleConfig().WithName("").WithArgs("guest").WithRandSource(rand.Reader).WithStartFunctions("_initialize")}
}

type rawInstance struct {
	mod         api.Module
	stdin       *bytes.Reader
	stdout      *bytes.Buffer
	stderr      *bytes.Buffer
	sluice_call api.Function
}

func (r *raw) instantiate(b *testing.B) *rawInstance {
	in := &rawInstance{stdin: bytes.NewReader(nil), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	mod, err := r.rt.InstantiateModule(context.Background(), r.compiled, r.cfg.WithStdin(in.stdin).WithStdout(in.stdout).WithStderr(in.stderr))
	if err != nil {
		b.Fatal(err)
	}
	in.mod, in.sluice_call = mod, mod.ExportedFunction("sluice_call")
	return in
}

func (r *raw) call(b *testing.B, in *rawInstance) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in.stdin.Reset(r.envelope)
	if _, err := in.sluice_call.Call(ctx); err != nil {
		b.Fatal(err)
	}
	if !json.Valid(in.stdout.Bytes()) {
		b.Fatalf("reply %q", in.stdout.Bytes())
	}
	in.mod.Close(ctx)
}

// BenchmarkRawWarm: raw wazero, one call on an instance made (and
// initialized) before the timer starts.
func BenchmarkRawWarm(b *testing.B) {
	r := newRaw(b)
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		in := r.instantiate(b)
		b.StartTimer()
		start := time.Now()
		r.call(b, in)
		d = append(d, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, d)
}

// BenchmarkRawFresh: raw wazero, a fresh instance per call, made in the
// loop: the rate the pool is measured against.
func BenchmarkRawFresh(b *testing.B) {
	r := newRaw(b)
	b.ResetTimer()
	for range b.N {
		r.call(b, r.instantiate(b))
	}
	b.StopTimer()
	reportRate(b)
}

// BenchmarkRawFreshParallel: as BenchmarkRawFresh, from GOMAXPROCS
// goroutines.
func BenchmarkRawFreshParallel(b *testing.B) {
	r := newRaw(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.call(b, r.instantiate(b))
		}
	})
	b.StopTimer()
	reportRate(b)
}
