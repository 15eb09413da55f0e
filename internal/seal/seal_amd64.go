//go:build linux && amd64

package seal

import "golang.org/x/sys/unix"

// openAMD64: open(2), which arm64 does not have; its path is its first
// argument, relative to the working directory.
var openAMD64 = []watched{{unix.SYS_OPEN, -1, 0}}
