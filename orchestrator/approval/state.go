package approval

import "fmt"

// What can happen to a held call.
const (
	Approve   = "approve"   // a person approves it
	Deny      = "deny"      // a person denies it
	Use       = "use"       // the approved call goes ahead, once
	Supersede = "supersede" // the call changed before it was answered
	Cancel    = "cancel"    // its run was cancelled
)

// transitions is the whole life of a held call: the state it goes
// to for each event, from each state. Anything not here is refused: a
// denied call cannot be approved, an approval lets one call through once,
// and a used, denied, superseded or cancelled approval never changes
// again. [Approval.Advance] is the only code that changes an approval's
// status (TestStatusHasOneWriter, and the engine's TestEngineSetsNoApprovalStatus).
var transitions = map[[2]string]string{
	{Pending, Approve}:   Approved,
	{Pending, Deny}:      Denied,
	{Pending, Supersede}: Superseded,
	{Pending, Cancel}:    Cancelled,
	{Approved, Use}:      Used,
	{Approved, Cancel}:   Cancelled,
}

// Advance moves a to the state event leads to from its own, or refuses.
func (a *Approval) Advance(event string) error {
	next, ok := transitions[[2]string{a.Status, event}]
	if !ok {
		return fmt.Errorf("approval %s is %s: it cannot %s", a.ID, a.Status, event)
	}
	a.Status = next
	return nil
}
