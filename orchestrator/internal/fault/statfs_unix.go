//go:build unix

package fault

import (
	"fmt"
	"syscall"
)

// freeSpace describes the space left on the file system of dir, or ""
// when it cannot be read.
func freeSpace(dir string) string {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%s free of %s", bytes(uint64(st.Bavail)*uint64(st.Bsize)), bytes(uint64(st.Blocks)*uint64(st.Bsize)))
}

// bytes formats n in B, KiB, MiB, GiB or TiB.
func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
