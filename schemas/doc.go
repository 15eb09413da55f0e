// Package schemas is the wire contract between the orchestrator and the
// workers, imported by both: the subjects and headers of a tool call, the
// reply envelope, the egress request, the chat messages of model tools,
// and the embedded JSON Schemas of flows, manifests, policies, the
// configuration and every built-in tool. It also reads YAML with the
// position of every value, and reports problems as [Diagnostics] with
// file:line:col and a caret ([Render], [ScalarMap] for positions inside a
// string).
package schemas
