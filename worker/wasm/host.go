package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// HostModule is the name of the module whose functions a guest may import,
// besides wasi_snapshot_preview1.
const HostModule = "sluice"

// Names of the host functions.
const (
	fnHTTP       = "http"
	fnHTTPResult = "http_result"
	fnLog        = "log"
)

// Bounds on what one call may ask of the host.
const (
	maxHTTPRequests = 32      // egress requests per call
	maxHTTPRequest  = 1 << 20 // bytes of one request envelope
	maxLogLines     = 64      // log lines per call
	maxLogLine      = 1 << 10 // bytes of one log line
)

// callState is what the host functions know of the call in progress. It
// travels in the context of the guest call; instances made ahead of time
// run their initialization without one.
type callState struct {
	call     *worker.Call
	log      *slog.Logger
	pending  []byte // the result of the last http, until http_result
	requests int
	lines    int
	dropped  int
}

type stateKey struct{}

func withState(ctx context.Context, st *callState) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

func stateFrom(ctx context.Context) *callState {
	st, _ := ctx.Value(stateKey{}).(*callState)
	return st
}

// instantiateHost defines the "sluice" host module: http, http_result and
// log. Nothing else is exported to the guest.
func instantiateHost(ctx context.Context, rt wazero.Runtime, log *slog.Logger) error {
	i32 := api.ValueTypeI32
	_, err := rt.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostHTTP), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("req", "req_len").
		Export(fnHTTP).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostHTTPResult), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("buf", "buf_len").
		Export(fnHTTPResult).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			hostLog(ctx, m, stack, log)
		}), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("level", "msg", "msg_len").
		Export(fnLog).
		Instantiate(ctx)
	return err
}

// hostHTTP(req, req_len) -> result_len sends the JSON request at req
// (schemas.EgressRequest) through the call's egress client and keeps the
// JSON result (schemas.EgressResponse, whose error says why a request was
// refused) for http_result. It returns the result's length.
func hostHTTP(ctx context.Context, m api.Module, stack []uint64) {
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	res := doHTTP(ctx, m, ptr, n)
	if st := stateFrom(ctx); st != nil {
		st.pending = res
	}
	stack[0] = api.EncodeU32(uint32(len(res)))
}

func doHTTP(ctx context.Context, m api.Module, ptr, n uint32) []byte {
	st := stateFrom(ctx)
	if st == nil {
		return refusal(schemas.CodeEgress, "no call in progress: HTTP is available only while serving a call")
	}
	if st.requests >= maxHTTPRequests {
		return refusal(schemas.CodeEgress, "more than 32 HTTP requests in one call")
	}
	st.requests++
	if n > maxHTTPRequest {
		return refusal(schemas.CodeTooLarge, "HTTP request envelope over 1 MiB")
	}
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		return refusal(schemas.CodeBadArguments, "HTTP request outside the module's memory")
	}
	var req schemas.EgressRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return refusal(schemas.CodeBadArguments, "HTTP request is not a JSON request envelope")
	}
	resp, err := st.call.HTTP(ctx, req)
	if err != nil {
		var re *schemas.ReplyError
		switch {
		case errors.As(err, &re):
			return refusal(re.Code, re.Message)
		case errors.Is(err, worker.ErrNoEgress):
			return refusal(schemas.CodeEgress, "the worker has no network grant")
		case ctx.Err() != nil:
			return refusal(schemas.CodeFailed, "the call ended before the HTTP request finished")
		default:
			st.log.Warn("egress request failed", "err", err)
			return refusal(schemas.CodeFailed, "the HTTP request failed")
		}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return refusal(schemas.CodeFailed, "the HTTP response cannot be encoded")
	}
	return out
}

func refusal(code, msg string) []byte {
	b, _ := json.Marshal(schemas.EgressResponse{Error: &schemas.ReplyError{Code: code, Message: msg}})
	return b
}

// hostHTTPResult(buf, buf_len) -> written copies the pending result of the
// last http call into buf and forgets it.
func hostHTTPResult(ctx context.Context, m api.Module, stack []uint64) {
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	st := stateFrom(ctx)
	if st == nil || st.pending == nil {
		stack[0] = 0
		return
	}
	res := st.pending
	if uint32(len(res)) > n {
		res = res[:n]
	}
	if !m.Memory().Write(ptr, res) {
		stack[0] = 0
		return
	}
	st.pending = nil
	stack[0] = api.EncodeU32(uint32(len(res)))
}

// hostLog(level, msg, msg_len) writes one line to the worker's log, tagged
// with the call. Lines are cut at 1 KiB, a call may write 64, and the
// level is at most warn.
func hostLog(ctx context.Context, m api.Module, stack []uint64, base *slog.Logger) {
	level := slog.Level(int32(api.DecodeU32(stack[0])))
	ptr, n := api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	log := base
	if st := stateFrom(ctx); st != nil {
		if st.lines >= maxLogLines {
			st.dropped++
			return
		}
		st.lines++
		log = st.log
	}
	b, ok := m.Memory().Read(ptr, min(n, maxLogLine))
	if !ok {
		return
	}
	// A guest's line is at most a warning: errors are for the operator
	// to act on, and a tool cannot decide that.
	level = min(max(level, slog.LevelDebug), slog.LevelWarn)
	log.Log(ctx, level, "guest log", "text", printable(b), "truncated", n > maxLogLine)
}

// printable returns b as valid UTF-8 without control characters, so a
// guest cannot forge log lines.
func printable(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r == utf8.RuneError && size == 1:
			sb.WriteRune(utf8.RuneError)
		case r == '\t':
			sb.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			sb.WriteRune(utf8.RuneError)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
