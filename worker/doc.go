// Package worker is the runtime every worker process uses: it connects to
// the bus with the worker's own credentials, joins the worker's queue group,
// validates each call's arguments against the tool's input schema, runs the
// tool's [Handler], and replies with the envelope of schemas.Reply.
//
// A worker can do only what its NATS user allows: receive calls for its own
// tools, reply to them, and — when its manifest grants network access — ask
// the orchestrator's egress broker for HTTP requests ([Call.HTTP]). It never
// holds a secret and never dials the network itself.
//
// The built-in workers live in the subfolders (web, payment, llm); each
// exports a constructor of type [Builtin].
package worker
