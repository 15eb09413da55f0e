package web

import "errors"

// ErrNotLoopback is returned by [New] for an address that is not a
// loopback address: the page is served on this machine only.
var ErrNotLoopback = errors.New("not a loopback address")
