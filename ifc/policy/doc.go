// Package policy loads policy files and decides tool calls with them.
//
// A policy file is YAML: a list of rules, each a CEL boolean `when` and an
// action; optional registries, user-kept lists the rules may consult; and
// optional caps, budgets the orchestrator keeps:
//
//	rules:
//	  - name: untrusted-never-pays-alone
//	    when: tool.privileged && label.integrity == "untrusted"
//	    action: approve
//	    reason: untrusted content cannot decide a privileged call
//	  - name: known-payees
//	    when: tool.name == "payment.charge" && args.payee in registry.payees
//	    action: endorse
//	registries:
//	  payees: [acct_hotel_1]
//	caps:
//	  - {name: hotel-spend, tool: payment.charge, per: payee, window: day, sum: amount, max_total: 300}
//
// [Load] compiles every rule of every file once, against the catalog of
// tools ([Tools]), and reports every problem of every file at once, each
// with its file:line:col. The resulting [Set] is immutable and safe for
// concurrent use.
//
// # Variables and functions
//
// Rules see label (the call's context label) and arg_labels (the label of
// each argument, by name), each with the fields integrity (string), secrecy
// and sources (lists of strings); args (the arguments); tool (name, worker,
// privileged, approvable, egress, and clearance with integrity and
// secrecy); run (id, flow, step); and registry (map of list of strings).
// Fields are typed: a misspelled field is a load error. flows_to(label,
// clearance) is [ifc.Label.FlowsTo]; from_source(label, prefix) holds when
// some source of the label starts with prefix.
//
// # Rules about a tool
//
// A rule whose when is a conjunction with a term tool.name == "x.y" (or
// tool.name in [...], or tool.worker == "w") is about those tools only: it
// can match no other. For each of them, args and arg_labels are objects
// with one field per argument the tool's input schema declares: a rule
// that reads an argument the tool does not have, or compares tool.name
// with a tool the catalog does not have, fails to load. Such a rule reads
// an argument as args.x and tests for it with has(args.x). Arguments of
// type string and boolean are typed so; numbers stay dyn, since JSON gives
// both integers and doubles. Rules about any tool keep args a map of dyn.
// Decide evaluates, for a call, only the rules about any tool and the rules
// about the called tool, less those whose conjunction needs a flag the tool
// does not have (tool.egress, !tool.privileged): CEL's && is false when one
// term is, whatever the others do, so skipping them changes no decision.
// These fast paths (the rules a tool can match, their programs typed and
// folded for it, the flag tests) are held to a plain evaluation of every
// rule as written by a differential fuzz test, FuzzFastPathsArePlain,
// whose seeds run with every go test.
//
// # Decisions
//
// The built-in clearance check, flows_to(label, tool.clearance), always
// runs and cannot be switched off. A matching deny rule wins over
// everything, and no person can approve a denied call. Endorse and
// declassify rules lower the call's labels, for that call only, when they
// match: endorse raises integrity to trusted, declassify drops the secrecy
// tags the rule lists, and the lowered labels record the rule in their
// sources (endorsed:<rule>, declassified:<rule>). Deny, endorse and
// declassify rules see the labels as they came; the clearance check and
// the approve and allow rules see them lowered. Then a failing clearance
// check denies a tool that is not approvable and holds one that is; a
// matching approve rule holds the call, even when its labels were lowered;
// otherwise the call is allowed. A rule whose evaluation fails counts as
// matched if it is a deny or approve rule and as not matched otherwise:
// errors fail closed. See [Set.Decide].
//
// # Lowering
//
// Lowering a label needs an [ifc.Reason], which only this package can
// build: for a rule, inside Decide; for a person, by [Decision.Approve] of a
// decision to hold, once. No other package can lower a label.
//
// # Limits
//
// Each rule is parsed with at most [MaxRuleSize] code points,
// [MaxRecursionDepth] levels of nesting and [MaxNodes] nodes. Its worst-case
// cost is estimated at load: a rule under [StaticCostLimit] runs without
// run-time cost tracking; any other rule (one that iterates over data whose
// size is known only at run time) runs with the cost limit [MaxCost], and
// fails closed when it exceeds it.
package policy
