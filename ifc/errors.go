package ifc

import "errors"

// ErrReason is returned by [Endorse] and [Declassify] when the reason does
// not allow the lowering asked for: the zero Reason, or a reason of the
// other kind.
var ErrReason = errors.New("lowering a label needs a reason that allows it")
