package schemas

import (
	"encoding/json"
	"strings"

	"github.com/sluicehq/sluice/ifc"
)

// DefaultPrefix is the first token of every Sluice subject.
const DefaultPrefix = "sluice"

// Headers of a tool call (DESIGN §3). Names are case-sensitive on NATS.
const (
	HeaderRun            = "Sluice-Run"             // run id (a ULID)
	HeaderStep           = "Sluice-Step"            // step id within the flow
	HeaderMsg            = "Sluice-Msg"             // this message's id (a ULID)
	HeaderLabel          = "Sluice-Label"           // JSON context label; informational only
	HeaderIdempotencyKey = "Sluice-Idempotency-Key" // stable across retries of one step
	// HeaderOrchestrator names the orchestrator that delivered the call,
	// when several share the deployment: a worker sends it with the
	// call's egress requests, and only that orchestrator's broker, which
	// knows the call, answers them.
	HeaderOrchestrator = "Sluice-Orchestrator"
)

// MaxReply bounds the size of a reply envelope a worker may send. It matches
// the NATS server's default max_payload.
const MaxReply = 1 << 20

// Subjects builds every subject from one prefix, so no subject is spelled
// anywhere else.
type Subjects struct{ Prefix string }

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Tool is the subject of one tool of one worker: <prefix>.tool.<worker>.<tool>.
func (s Subjects) Tool(worker, tool string) string {
	return s.prefix() + ".tool." + worker + "." + tool
}

// ToolWildcard matches every tool of worker: <prefix>.tool.<worker>.>.
func (s Subjects) ToolWildcard(worker string) string {
	return s.prefix() + ".tool." + worker + ".>"
}

// ToolFromSubject returns the tool name of a tool subject of worker.
func (s Subjects) ToolFromSubject(worker, subject string) (string, bool) {
	return strings.CutPrefix(subject, s.prefix()+".tool."+worker+".")
}

// Egress is the subject on which worker asks the egress broker for network
// access: <prefix>.egress.<worker>.
func (s Subjects) Egress(worker string) string { return s.prefix() + ".egress." + worker }

// EgressWildcard matches every worker's egress subject.
func (s Subjects) EgressWildcard() string { return s.prefix() + ".egress.*" }

// API is the subject of one orchestrator API call: <prefix>.api.<name>.
func (s Subjects) API(name string) string { return s.prefix() + ".api." + name }

// Orchestrator is the subject of a request one orchestrator of a
// deployment makes of another, by its id: <prefix>.orchestrator.<id>.<name>.
// Only orchestrators may use it: neither a worker's permissions nor a
// client's (the API's, <prefix>.api.>) cover it.
func (s Subjects) Orchestrator(id, name string) string {
	return s.prefix() + ".orchestrator." + id + "." + name
}

// Inbox is the reply-inbox prefix of a worker's connection:
// _INBOX.<prefix>.<worker>. A worker may subscribe only below it, so it
// cannot read another worker's replies, nor those of a worker of the same
// name in another deployment on the same NATS account.
func (s Subjects) Inbox(worker string) string { return "_INBOX." + s.prefix() + "." + worker }

// Reply is the envelope a worker answers a tool call with: exactly one of
// Output and Error. Labels optionally names per-field labels of the output,
// keyed by a dotted path ("events.0.description"); the orchestrator joins
// them in and never lets them lower anything.
type Reply struct {
	Output json.RawMessage      `json:"output,omitempty"`
	Error  *ReplyError          `json:"error,omitempty"`
	Labels map[string]ifc.Label `json:"labels,omitempty"`
	// Usage is what the call spent at a model API (the llm worker), with
	// an output or an error alike; the orchestrator records it in the
	// call's result record.
	Usage *Usage `json:"usage,omitempty"`
}

// Usage counts the tokens of a call's model requests.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// ReplyError is a tool failure, with a stable code.
type ReplyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ReplyError) Error() string { return e.Code + ": " + e.Message }

// Reply error codes shared by every worker.
const (
	CodeBadArguments = "bad_arguments" // arguments did not decode or validate
	CodeUnknownTool  = "unknown_tool"  // the worker has no such tool
	CodeFailed       = "tool_failed"   // the tool ran and failed
	CodeInternal     = "internal"      // the worker broke (a recovered panic)
	CodeEgress       = "egress_denied" // the egress broker refused a request
	CodeTooLarge     = "too_large"     // an output or response exceeded its limit
)

// EgressRequest is what a worker sends on its egress subject: one HTTP
// request for the broker to check and perform. The header HeaderMsg must name
// the tool call it serves.
type EgressRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
}

// SMTPInsecurePlaintext is a header of an SMTP egress request (method
// SMTP): "true" lets the broker send the message in the clear to a server
// that is not on loopback and offers no STARTTLS. Without it such a send
// is refused before anything of the message leaves. The email worker sets
// it only when its configuration says smtp.insecure_plaintext: true.
const SMTPInsecurePlaintext = "Insecure-Plaintext"

// EgressResponse is the broker's answer: the HTTP response, or an error.
type EgressResponse struct {
	Status  int               `json:"status,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
	Error   *ReplyError       `json:"error,omitempty"`
}
