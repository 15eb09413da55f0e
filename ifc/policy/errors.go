package policy

import "errors"

// Codes of the diagnostics [Load] and [LoadCases] report, on top of the
// yaml_* and schema_* codes of package schemas. They are stable: tests and
// tools match on them, never on the message.
const (
	// CodeCompile: a when expression does not parse or type-check.
	CodeCompile = "policy_compile"
	// CodeNotBoolean: a when expression is not of type bool.
	CodeNotBoolean = "policy_not_boolean"
	// CodeDuplicateRule: a rule takes a name a rule or cap already has, in
	// one file or in two.
	CodeDuplicateRule = "policy_duplicate_rule"
	// CodeDuplicateCap: a cap takes a name a rule or cap already has.
	CodeDuplicateCap = "policy_duplicate_cap"
	// CodeReservedRule: a rule or cap takes the name of the built-in
	// clearance check.
	CodeReservedRule = "policy_reserved_rule"
	// CodeTags: a declassify rule without tags, or tags on a rule of
	// another action.
	CodeTags = "policy_tags"
	// CodeAfterLowering: after_lowering on a rule that is not a deny.
	CodeAfterLowering = "policy_after_lowering"
	// CodeDuplicateRegistry: two files define a registry of one name.
	CodeDuplicateRegistry = "policy_duplicate_registry"
	// CodeUnknownRegistry: a rule reads registry.<name> and no file
	// defines it.
	CodeUnknownRegistry = "policy_unknown_registry"
	// CodeUnknownTool: a rule compares tool.name (or tool.worker) with a
	// tool (or worker) the catalog does not have, or a cap is on one.
	CodeUnknownTool = "policy_unknown_tool"
	// CodeUnknownArgument: a rule about a tool reads an argument the tool's
	// input schema does not declare, or a cap names one.
	CodeUnknownArgument = "policy_unknown_argument"
	// CodeCapSum: a cap sums an argument that is not a number.
	CodeCapSum = "policy_cap_sum"
	// CodeCapTokens: a token budget (max_tokens) on a cap that also has
	// per, sum or max_count.
	CodeCapTokens = "policy_cap_tokens"
	// CodeDuplicateCase: two decision cases in one file have one name.
	CodeDuplicateCase = "policy_duplicate_case"
)

// ErrNotHeld is returned by [Decision.Approve] for a decision that cannot
// be approved: not a hold made by [Set.Decide], approved already, or
// approved by nobody.
var ErrNotHeld = errors.New("not a held call that can be approved")
