package schemas

import "github.com/sluicehq/sluice/ifc"

// Step and run statuses, as a run result gives them.
const (
	StatusCompleted = "completed"
	StatusDenied    = "denied"
	StatusHeld      = "held"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped" // a step it depends on did not complete
	// StatusInterrupted: the run, or the step, stopped before it finished
	// because its orchestrator stopped or a person pressed Ctrl-C; the run
	// is kept (the orchestrator says when it goes on).
	StatusInterrupted = "interrupted"
	// StatusCancelled: the run was ended for good (sluice cancel).
	StatusCancelled = "cancelled"
)

// RunResult is what a run did: its status, every step's result and the
// flow's outputs. sluice run --json prints it, and the orchestrator's API
// answers a run with it.
type RunResult struct {
	RunID   string         `json:"run_id"`
	Flow    string         `json:"flow"`
	Status  string         `json:"status"`
	Steps   []StepResult   `json:"steps"`
	Outputs map[string]any `json:"outputs"`
	Error   string         `json:"error,omitempty"`
}

// StepResult says what happened to one step.
type StepResult struct {
	ID     string `json:"id"`
	Tool   string `json:"tool"`
	Status string `json:"status"`
	// Label is the step's context label: the join of its arguments' and
	// of its if condition's.
	Label     ifc.Label            `json:"label"`
	ArgLabels map[string]ifc.Label `json:"arg_labels,omitempty"`
	// DeliveredLabel is the context label the call was delivered with
	// when an endorse or declassify rule, or an approval, lowered Label
	// for this call; its sources name them (endorsed:<rule>,
	// declassified:<rule>, approved:<who>).
	DeliveredLabel *ifc.Label `json:"delivered_label,omitempty"`
	// OutputLabel is the label of the output of a completed step.
	OutputLabel *ifc.Label `json:"output_label,omitempty"`
	Decision    string     `json:"decision,omitempty"`
	Rules       []string   `json:"rules,omitempty"`
	Reasons     []string   `json:"reasons,omitempty"`
	ApprovalID  string     `json:"approval_id,omitempty"`
	// Args are the exact arguments of a held call, for the person who
	// decides on it; they are given for held calls only.
	Args map[string]any `json:"args,omitempty"`
	// Lookalikes flags arguments of a held call that look like, but are
	// not, a registry entry or a value approved before.
	Lookalikes []Lookalike `json:"lookalikes,omitempty"`
	// Why says in plain words why a held call is held; Reasons keep the
	// policy's own words.
	Why   []string `json:"why,omitempty"`
	MsgID string   `json:"msg_id,omitempty"`
	// Attempts is how many times the call was sent (more than one when
	// the step has retries).
	Attempts int `json:"attempts,omitempty"`
	// Usage is the tokens the call spent at a model API, over all its
	// tries; what token budgets (a cap's max_tokens) count. For an agent
	// step, what its model's turns spent; its Calls carry their own.
	Usage *Usage `json:"usage,omitempty"`
	Error string `json:"error,omitempty"`
	// ErrorLabel is the label of the error of a call that failed: the
	// worker wrote it, after reading what the call reached.
	ErrorLabel *ifc.Label `json:"error_label,omitempty"`
	// Index is the element of a for_each step this result is about.
	Index *int `json:"index,omitempty"`
	// Items are the results of each call of a for_each step.
	Items []StepResult `json:"items,omitempty"`
	// Turns is how many answers the model of an agent step gave (of a
	// plan step: how many programs its planner wrote); Calls are the tool
	// calls it proposed, as the policy gate decided them.
	Turns int          `json:"turns,omitempty"`
	Calls []StepResult `json:"calls,omitempty"`
	// Program is the latest program a plan step's planner wrote.
	Program string `json:"program,omitempty"`
	// Sources of each argument, for people deciding on a held call.
	ArgSources map[string][]string `json:"-"`
}

// Lookalike flags a string argument of a held call that looks like a
// value the person trusts — an entry of a policy registry, or the same
// argument of a call of the same tool that a person approved before — but
// is not that value: "аcct_hotel_1" with a Cyrillic а beside the
// registry's acct_hotel_1. Looks are compared by Unicode TR39 skeleton
// (display.Skeleton).
type Lookalike struct {
	// Arg is the argument, with the element for a list ("attendees[1]").
	Arg string `json:"arg"`
	// Value is the argument's value; Like the value it looks like.
	Value string `json:"value"`
	Like  string `json:"like"`
	// Where says where Like is kept: "registry payees", or "approved
	// before (payment.charge payee)".
	Where string `json:"where"`
}
