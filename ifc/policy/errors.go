package policy

// Codes of the diagnostics [Load] and [LoadCases] report, on top of the
// yaml_* and schema_* codes of package schemas. They are stable: tests and
// tools match on them, never on the message.
const (
	// CodeCompile: a when expression does not parse or type-check.
	CodeCompile = "policy_compile"
	// CodeNotBoolean: a when expression is not of type bool.
	CodeNotBoolean = "policy_not_boolean"
	// CodeDuplicateRule: two rules, in one file or in two, have one name.
	CodeDuplicateRule = "policy_duplicate_rule"
	// CodeReservedRule: a rule takes the name of the built-in clearance
	// check.
	CodeReservedRule = "policy_reserved_rule"
	// CodeUnsupportedAction: endorse and declassify are part of the design
	// but not available yet.
	CodeUnsupportedAction = "policy_unsupported_action"
	// CodeDuplicateRegistry: two files define a registry of one name.
	CodeDuplicateRegistry = "policy_duplicate_registry"
	// CodeUnknownRegistry: a rule reads registry.<name> and no file
	// defines it.
	CodeUnknownRegistry = "policy_unknown_registry"
	// CodeDuplicateCase: two decision cases in one file have one name.
	CodeDuplicateCase = "policy_duplicate_case"
)
