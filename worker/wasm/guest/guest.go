//go:build wasip1

package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"unsafe"
)

// Handler serves the tools of a module. tool is the short tool name
// ("convert" for currency.convert); args are the call's JSON arguments,
// already checked by the worker against the tool's input schema. The
// output is any value encoding/json can encode, or a json.RawMessage.
//
// An error made by [BadArguments] is reported with code bad_arguments;
// any other error with code tool_failed and its message. Messages reach
// the audit log: name what was wrong, never quote a payload.
type Handler func(tool string, args json.RawMessage) (any, error)

var handler Handler

// Serve makes h the module's handler. Call it from an init function: in a
// reactor, main does not run.
func Serve(h Handler) { handler = h }

// init builds, ahead of time, what the first call would otherwise pay
// for: encoding/json's codecs of the envelope and the reply.
func init() {
	var env envelope
	_ = json.Unmarshal([]byte(`{"tool":"t","args":{"a":[1,"b",true,null]}}`), &env)
	var r reply
	b, _ := json.Marshal(reply{Output: json.RawMessage(`{"a":1}`), Error: &replyError{Code: "c", Message: "m"}})
	_ = json.Unmarshal(b, &r)
}

// Warm builds encoding/json's codecs for the types of values ahead of
// time. Call it from init with a value of each argument and output type:
// init runs when the instance is made, before any call, so the call does
// not pay for reflection on its first use of a type. It does nothing
// else; values are only encoded and decoded.
func Warm(values ...any) {
	for _, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			continue
		}
		p := reflect.New(reflect.TypeOf(v))
		_ = json.Unmarshal(b, p.Interface())
	}
}

// Error is a tool error with a reply code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// BadArguments returns an error with code bad_arguments.
func BadArguments(format string, args ...any) error {
	return &Error{Code: "bad_arguments", Message: fmt.Sprintf(format, args...)}
}

type envelope struct {
	Tool           string          `json:"tool"`
	Args           json.RawMessage `json:"args"`
	IdempotencyKey string          `json:"idempotency_key"`
}

var idempotencyKey string

// IdempotencyKey returns the idempotency key of the call being served: the
// same for every try of one call (a retry, a call sent again after a
// worker or the orchestrator restarted), different for every other call.
// A tool whose call has an effect elsewhere (an HTTP request that pays,
// books or sends) passes it on — e.g. as an Idempotency-Key header — so
// that the effect happens once.
func IdempotencyKey() string { return idempotencyKey }

type replyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type reply struct {
	Output json.RawMessage `json:"output,omitempty"`
	Error  *replyError     `json:"error,omitempty"`
}

// call is what the worker runs for each call, once per instance.
//
//lint:ignore U1000 the host calls it: it is exported by go:wasmexport
//go:wasmexport sluice_call
func call() {
	out := serve()
	b, err := json.Marshal(out)
	if err != nil {
		b = []byte(`{"error":{"code":"tool_failed","message":"reply is not JSON"}}`)
	}
	_, _ = os.Stdout.Write(b)
}

func serve() (r reply) {
	defer func() {
		if p := recover(); p != nil {
			r = reply{Error: &replyError{Code: "tool_failed", Message: fmt.Sprintf("panic: %v", p)}}
		}
	}()
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return reply{Error: &replyError{Code: "tool_failed", Message: "read the call: " + err.Error()}}
	}
	var env envelope
	if err := json.Unmarshal(in, &env); err != nil {
		return reply{Error: &replyError{Code: "tool_failed", Message: "the call is not a JSON envelope"}}
	}
	if handler == nil {
		return reply{Error: &replyError{Code: "tool_failed", Message: "no handler: call guest.Serve from an init function"}}
	}
	idempotencyKey = env.IdempotencyKey
	v, err := handler(env.Tool, env.Args)
	if err != nil {
		var ge *Error
		if errors.As(err, &ge) {
			return reply{Error: &replyError{Code: ge.Code, Message: ge.Message}}
		}
		return reply{Error: &replyError{Code: "tool_failed", Message: err.Error()}}
	}
	if raw, ok := v.(json.RawMessage); ok {
		return reply{Output: raw}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return reply{Error: &replyError{Code: "tool_failed", Message: "output is not JSON: " + err.Error()}}
	}
	return reply{Output: b}
}

// Request is an HTTP request for the egress broker. Headers may hold
// placeholders such as {{secret:NAME}}; the broker fills them in for the
// secret's hosts only, so the value never reaches the tool.
type Request struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
}

// Response is the broker's answer.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
}

type httpResult struct {
	Response
	Error *replyError `json:"error,omitempty"`
}

//go:wasmimport sluice http
func hostHTTP(req unsafe.Pointer, reqLen uint32) uint32

//go:wasmimport sluice http_result
func hostHTTPResult(buf unsafe.Pointer, bufLen uint32) uint32

//go:wasmimport sluice log
func hostLog(level int32, msg unsafe.Pointer, msgLen uint32)

// HTTP asks the worker to send req through the orchestrator's egress
// broker, which checks the destination against the worker's grants. A
// refused request returns an *Error with code egress_denied. The hosts a
// call reaches are added to the sources of its output's label.
func HTTP(req Request) (*Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	n := hostHTTP(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
	buf := make([]byte, n)
	if n > 0 {
		buf = buf[:hostHTTPResult(unsafe.Pointer(unsafe.SliceData(buf)), n)]
	}
	var res httpResult
	if err := json.Unmarshal(buf, &res); err != nil {
		return nil, fmt.Errorf("egress: malformed result: %w", err)
	}
	if res.Error != nil {
		return nil, &Error{Code: res.Error.Code, Message: res.Error.Message}
	}
	return &res.Response, nil
}

// Get is HTTP with method GET and no body.
func Get(url string, headers map[string]string) (*Response, error) {
	return HTTP(Request{Method: "GET", URL: url, Headers: headers})
}

// Level of a log line; the values are log/slog's.
type Level int32

// Levels of [Log].
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// Log writes a line to the worker's log, tagged with the call. Long lines
// are cut and a call's lines are capped; the log is the operator's, so keep
// payloads out of it.
func Log(level Level, msg string) {
	b := unsafe.StringData(msg)
	hostLog(int32(level), unsafe.Pointer(b), uint32(len(msg)))
}
