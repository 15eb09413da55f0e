// Package wasm serves the tools of a manifest whose run is "wasm:PATH": a
// WebAssembly module (WASI preview 1) run by wazero, in a fresh instance
// for every call. Third-party code never runs natively in Sluice; this is
// where it runs instead.
//
// # The guest contract
//
// A call is a JSON envelope on the guest's stdin,
//
//	{"tool": "convert", "args": {"amount": 80, "from": "EUR", "to": "USD"}}
//
// so that one module can serve every tool of its manifest. The guest
// answers on stdout with exactly one of
//
//	{"output": <any JSON value>}
//	{"error": {"code": "bad_arguments" | "tool_failed", "message": "…"}}
//
// The arguments were checked against the tool's input schema before the
// guest sees them; the output is checked against its output schema, when
// the manifest names one. Any other error code becomes tool_failed (a
// guest cannot claim, say, egress_denied), and messages are cut to 512
// bytes of printable text.
//
// A module is one of:
//
//   - a reactor, which exports _initialize and sluice_call: the worker runs
//     _initialize ahead of time and sluice_call once, for the call. Go
//     tools built with package guest and -buildmode=c-shared are reactors.
//     This is the fast path.
//   - a command, which exports _start: the worker instantiates it ahead of
//     time without running anything, and runs _start for the call. Any
//     language that reads stdin and writes stdout can meet this contract;
//     a Go command pays for its runtime's start-up on every call.
//
// A guest may import the WASI preview 1 functions and, from module
// "sluice", these three, and nothing else (a module importing anything
// else is refused when the worker starts):
//
//	http(req, req_len i32) -> result_len i32
//	    req points at a JSON request {"method", "url", "headers", "body"
//	    (base64)}; the worker sends it through the call's egress client to
//	    the orchestrator's egress broker, which checks the destination
//	    against the worker's net grant, fills in secrets for their hosts,
//	    and records each host reached so that the output is labeled with
//	    it. The JSON result {"status", "headers", "body"} or {"error":
//	    {"code", "message"}} is kept for http_result; http returns its
//	    length. At most 32 requests per call, each at most 1 MiB.
//	http_result(buf, buf_len i32) -> written i32
//	    copies the kept result into buf.
//	log(level, msg, msg_len i32)
//	    one line to the worker's log, tagged with the call (slog levels;
//	    at most warn, 1 KiB per line, 64 lines per call).
//
// # The sandbox
//
// Every instance gets: no arguments but the worker's name, no environment,
// no file system unless the manifest grants a root (mounted at "/",
// read-only unless write, through an os.Root so that neither ".." nor a
// symbolic link leads out), no sockets (WASI preview 1 has none), wazero's
// fake clocks (the wall clock reads 2022-01-01 and advances 1 ms per
// read; sleeping returns at once), and crypto/rand as its random source.
// stdout is capped at limits.max_output, stderr at 4 KiB per call (the
// rest is counted and dropped; what is kept goes to the worker's log),
// memory at limits.memory, and wall time at limits.timeout: the instance
// is closed when the call's context ends (wazero's WithCloseOnContextDone).
//
// # Why a fresh instance for every call?
//
// A tool serves calls from many runs, each with its own labels. If an
// instance served two calls, a value from one run (a secret balance, an
// email) could stay in the guest's memory and come out in another run's
// output, under that run's labels: the orchestrator's labels would lie.
// With one instance per call, nothing but the call's own arguments is in
// the instance, and the output's label (the join of the arguments'
// labels) is right by construction. It also means a guest that trapped,
// ran out of memory or was stopped cannot affect the next call.
//
// # Why a pool of instances made ahead of time?
//
// Instantiating a Go-built module costs about 3 ms, and running its
// runtime's initialization about as much again; the call itself is a few
// hundred microseconds. A [Module] keeps a few instances ready (Config.Pool),
// made and, for reactors, initialized before any call is known, and hands
// each to exactly one call, then closes it. The pool refills in the
// background. An instance in the pool has run only its own initialization,
// with no call state: host functions refuse HTTP then.
//
// # Why fake clocks?
//
// A tool that needs the date takes it as an argument, where the flow
// decides it and it carries a label. Real clocks would give a guest a
// timing channel and make tools non-deterministic for no benefit.
//
// # Why enforce the memory limit in an allocator?
//
// When a guest's memory.grow fails, a Go guest dies with a generic trap
// ("wasm error: unreachable"). Growth is refused by the package's own
// allocator instead of wazero's limit, so the call's error can say that
// the memory limit was reached.
package wasm
