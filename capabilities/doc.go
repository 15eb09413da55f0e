// Package capabilities reads capability manifests: the whole authority of
// one worker — its tools with their input and output schemas, whether each
// is privileged, approvable or egress, the label of what it returns and
// the clearance of what it may be given, the hosts, files and secrets it is
// granted, and its limits — and derives from them the neutral permission
// data (the subjects a worker may use) that orchestrator/bus turns into
// NATS permissions. The shipped workers' manifests are embedded
// (builtin:payment, …). Anything a manifest leaves out means none.
package capabilities
