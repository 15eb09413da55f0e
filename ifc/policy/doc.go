// Package policy loads policy files and decides tool calls with them.
//
// A policy file is YAML: a list of rules, each a CEL boolean `when` and an
// action, and optional registries, user-kept lists the rules may consult:
//
//	rules:
//	  - name: untrusted-never-pays-alone
//	    when: tool.privileged && label.integrity == "untrusted"
//	    action: approve
//	    reason: untrusted content cannot decide a privileged call
//	registries:
//	  payees: [acct_hotel_1]
//
// [Load] compiles every rule of every file once, and reports every problem
// of every file at once, each with its file:line:col. The resulting [Set]
// is immutable and safe for concurrent use.
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
// # Decisions
//
// [Set.Decide] evaluates every rule. The built-in clearance check,
// flows_to(label, tool.clearance), always runs and cannot be switched off:
// when it fails the call is held for a human if the tool is approvable and
// denied otherwise. A matching deny rule wins over everything; otherwise a
// matching approve rule, or the failed clearance check of an approvable
// tool, holds the call; otherwise the call is allowed. A rule whose
// evaluation fails counts as matched if it is a deny or approve rule and as
// not matched if it is an allow rule: errors fail closed.
//
// The actions endorse and declassify (lowering a label for one call) are
// part of the design but not implemented yet; a rule using them is a load
// error.
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
