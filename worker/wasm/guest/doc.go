// Package guest is the guest side of a Sluice WASM tool written in Go: it
// reads the call from stdin, runs the tool's handler, writes the reply to
// stdout, and gives the handler the two host functions a tool may use,
// [HTTP] (through the orchestrator's egress broker) and [Log].
//
// A tool is a reactor module: its package init registers the handler with
// [Serve], main is empty, and it is built with -buildmode=c-shared so that
// the worker can initialize instances ahead of time and run one call in
// each:
//
//	//go:build wasip1
//
//	package main
//
//	import (
//		"encoding/json"
//
//		"github.com/sluicehq/sluice/worker/wasm/guest"
//	)
//
//	func init() { guest.Serve(handle) }
//
//	func main() {} // not run: the module is a reactor
//
//	func handle(tool string, args json.RawMessage) (any, error) { … }
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o tool.wasm .
//
// Every call runs in an instance that has served no call before and is
// closed after it, so package variables never carry anything from one call
// to the next. Package init, on the other hand, runs when the instance is
// made, before any call is known: do set-up there (compile regular
// expressions, [Warm] the argument and output types so that encoding/json
// has built their codecs), and nothing that depends on a call.
//
// The handler returns the output, or an error: one made by [BadArguments]
// is reported with code bad_arguments, any other with code tool_failed. A
// panic in the handler is recovered and reported as tool_failed; a panic
// in another goroutine ends the instance (the call fails as a trap).
//
// The package compiles only for GOOS=wasip1. The wire contract it
// implements, for modules written without it, is in package
// github.com/sluicehq/sluice/worker/wasm.
package guest
