package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// Handler serves one tool. It returns the output (any JSON-encodable
// value, or json.RawMessage) or an error; an error that is a
// *schemas.ReplyError keeps its code, any other error is reported as
// schemas.CodeFailed with its message.
//
// A handler must not put secrets or raw payloads into its error messages:
// errors travel on the bus and into the audit log.
type Handler func(ctx context.Context, call *Call) (any, error)

// Labeled is an output with per-field labels (see schemas.Reply). The
// orchestrator joins the labels in; they can only raise the output's label.
type Labeled struct {
	Output any
	Labels map[string]ifc.Label
}

// Call is one tool call as a handler sees it.
type Call struct {
	// Tool is the short tool name ("charge").
	Tool string
	// Args are the JSON arguments, already validated against the tool's
	// input schema.
	Args json.RawMessage
	// Run, Step and Msg identify the call; IdempotencyKey is stable across
	// retries of one step, so a retried side effect happens once.
	Run, Step, Msg, IdempotencyKey string
	// Log is the worker's logger with the call's identifiers attached.
	Log *slog.Logger

	egress func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error)
	// worker is the name of the worker serving the call.
	worker string

	usageMu sync.Mutex
	usage   *schemas.Usage
}

// AddUsage adds the tokens of one model request to what the call reports
// in its reply (schemas.Reply.Usage), whether it then succeeds or fails.
func (c *Call) AddUsage(input, output int64) {
	c.usageMu.Lock()
	defer c.usageMu.Unlock()
	if c.usage == nil {
		c.usage = &schemas.Usage{}
	}
	c.usage.InputTokens += max(input, 0)
	c.usage.OutputTokens += max(output, 0)
}

// Usage returns the tokens reported with AddUsage, or nil when none were.
func (c *Call) Usage() *schemas.Usage {
	c.usageMu.Lock()
	defer c.usageMu.Unlock()
	if c.usage == nil {
		return nil
	}
	u := *c.usage
	return &u
}

// Decode unmarshals the arguments into v.
func (c *Call) Decode(v any) error {
	if err := json.Unmarshal(c.Args, v); err != nil {
		return BadArguments("%v", err)
	}
	return nil
}

// ErrNoEgress is returned by [Call.HTTP] when the worker has no network
// grant, or the runtime was built without an egress client.
var ErrNoEgress = errors.New("worker has no network grant")

// noEgress is ErrNoEgress with the grant that would let worker reach raw,
// when raw names a host.
func noEgress(worker, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" || worker == "" {
		return ErrNoEgress
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "smtp": "25", "smtps": "465"}[u.Scheme]
	}
	if port == "" {
		return ErrNoEgress
	}
	hp := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	return fmt.Errorf("%w; to reach %s, add grants: {net: [%q]} to the %s worker in sluice.yaml", ErrNoEgress, hp, hp, worker)
}

// HTTP asks the orchestrator's egress broker to perform req on the call's
// behalf. The broker checks the destination against the worker's grants,
// fills in secrets for their hosts only, and records which hosts the call
// reached so that the output is labeled with them.
func (c *Call) HTTP(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
	if c.egress == nil {
		return nil, noEgress(c.worker, req.URL)
	}
	resp, err := c.egress(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return resp, nil
}

// NewCall builds a Call for tests of handlers: egress, when not nil, stands
// in for the broker.
func NewCall(tool string, args json.RawMessage, egress func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error)) *Call {
	return &Call{Tool: tool, Args: args, Run: "test-run", Step: "test-step", Msg: "test-msg",
		IdempotencyKey: "test-run/test-step", Log: slog.New(slog.DiscardHandler), egress: egress}
}

// BadArguments is a reply error with code bad_arguments.
func BadArguments(format string, args ...any) error {
	return &schemas.ReplyError{Code: schemas.CodeBadArguments, Message: fmt.Sprintf(format, args...)}
}

// Failed is a reply error with code tool_failed.
func Failed(format string, args ...any) error {
	return &schemas.ReplyError{Code: schemas.CodeFailed, Message: fmt.Sprintf(format, args...)}
}

// Env is what a built-in worker is constructed from.
type Env struct {
	// State is the absolute state directory (".sluice" by default); each
	// worker keeps its data under State/<worker>/.
	State string
	// Config is the worker's `config:` block from sluice.yaml, as JSON.
	// Relative paths in it are relative to the process's working directory,
	// which the supervisor sets to the directory of sluice.yaml.
	Config json.RawMessage
	Log    *slog.Logger
	// Manifest is the worker's manifest with this deployment's grants
	// added: a worker with a file grant finds its root here.
	Manifest *capabilities.Manifest
	// Keep is added to the confinement the process applies once the
	// Builtin has returned (see [Confinement]): a worker that must still
	// read a directory on every call, or create files in one, names it in
	// Keep.RO or Keep.RW. A single file is better kept open instead. Only
	// directories named by the worker's configuration or under State
	// belong here, so that what a worker keeps is fixed by trusted
	// configuration before its first call. Nil when nothing is confined
	// (tests).
	Keep *Confinement
}

// Builtin constructs the handlers of one built-in worker, by short tool
// name. It is called once per worker process.
type Builtin func(env Env) (map[string]Handler, error)
