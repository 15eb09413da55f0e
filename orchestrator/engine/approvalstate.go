package engine

import "fmt"

// What can happen to a held call.
const (
	approvalApprove   = "approve"   // a person approves it
	approvalDeny      = "deny"      // a person denies it
	approvalUse       = "use"       // the approved call goes ahead, once
	approvalSupersede = "supersede" // the call changed before it was answered
	approvalCancel    = "cancel"    // its run was cancelled
)

// approvalTransitions is the whole life of a held call: the state it goes
// to for each event, from each state. Anything not here is refused: a
// denied call cannot be approved, an approval lets one call through once,
// and a used, denied, superseded or cancelled approval never changes
// again. [Approval.advance] is the only code that changes an approval's
// status (TestApprovalStatusHasOneWriter).
var approvalTransitions = map[[2]string]string{
	{ApprovalPending, approvalApprove}:   ApprovalApproved,
	{ApprovalPending, approvalDeny}:      ApprovalDenied,
	{ApprovalPending, approvalSupersede}: ApprovalSuperseded,
	{ApprovalPending, approvalCancel}:    ApprovalCancelled,
	{ApprovalApproved, approvalUse}:      ApprovalUsed,
	{ApprovalApproved, approvalCancel}:   ApprovalCancelled,
}

// advance moves a to the state event leads to from its own, or refuses.
func (a *Approval) advance(event string) error {
	next, ok := approvalTransitions[[2]string{a.Status, event}]
	if !ok {
		return fmt.Errorf("approval %s is %s: it cannot %s", a.ID, a.Status, event)
	}
	a.Status = next
	return nil
}
