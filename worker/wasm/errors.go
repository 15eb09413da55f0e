package wasm

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/schemas"
)

// Sentinels for the ways a call can fail in the sandbox. A call's error
// wraps one of them (errors.Is); its message says which limit was reached,
// never what the guest wrote.
var (
	// ErrTimeout: the call ran past the manifest's limits.timeout and the
	// instance was closed.
	ErrTimeout = errors.New("time limit")
	// ErrMemory: the guest asked for more memory than limits.memory.
	ErrMemory = errors.New("memory limit")
	// ErrOutput: the guest wrote more to stdout than limits.max_output.
	ErrOutput = errors.New("output limit")
	// ErrTrap: the guest trapped (a WebAssembly runtime error).
	ErrTrap = errors.New("trap")
	// ErrExit: the guest exited with a non-zero status (a Go panic exits
	// with 2).
	ErrExit = errors.New("exit")
	// ErrReply: the guest's stdout was not a reply envelope.
	ErrReply = errors.New("malformed reply")
	// ErrModule: the module cannot serve as a tool (load time).
	ErrModule = errors.New("unusable module")
)

// callError is a failed call: Kind is one of the sentinels, Code the reply
// code the caller gets, Message what it reads.
type callError struct {
	Kind    error
	Code    string
	Message string
}

func (e *callError) Error() string { return e.Code + ": " + e.Message }
func (e *callError) Unwrap() error { return e.Kind }

// As lets the worker runtime reply with the error's code.
func (e *callError) As(target any) bool {
	if p, ok := target.(**schemas.ReplyError); ok {
		*p = &schemas.ReplyError{Code: e.Code, Message: e.Message}
		return true
	}
	return false
}

func failf(kind error, format string, args ...any) error {
	code := schemas.CodeFailed
	if kind == ErrOutput {
		code = schemas.CodeTooLarge
	}
	return &callError{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}
