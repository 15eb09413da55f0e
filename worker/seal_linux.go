//go:build linux

package worker

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSealUnsupported means SealNetwork does not know this architecture's
// system calls; the process was left as it was.
var ErrSealUnsupported = errors.New("sealing the network is not supported on " + runtime.GOARCH)

// SealNetwork makes the process, every thread of it, unable to open a
// socket for the rest of its life: socket(2) and io_uring_setup(2) fail
// with EPERM. Sockets already open, such as the connection to the bus,
// keep working.
//
// Landlock restricts TCP by port number only, and UDP not at all; a worker
// that reaches the bus over a connection it already holds needs no other
// socket, so once sealed, a worker taken over by what it read cannot send
// what it holds anywhere but the bus: not over TCP to another host on the
// bus's port, not over UDP, not through a raw or netlink socket.
//
// It is a seccomp filter, installed with no_new_privs, on amd64 and arm64.
func SealNetwork() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return ErrSealUnsupported
	}
	const (
		ld     = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret    = unix.BPF_RET | unix.BPF_K
		allow  = unix.SECCOMP_RET_ALLOW
		deny   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		offNr  = 0 // struct seccomp_data: int nr; __u32 arch; …
		offArc = 4
		// On amd64, system calls of the x32 ABI carry this bit and the
		// same arch: they would bypass the numbers checked below.
		x32 = 0x40000000
	)
	prog := []unix.SockFilter{
		/* 0 */ {Code: ld, K: offArc},
		/* 1 */ {Code: jeq, K: arch, Jt: 1, Jf: 0},
		/* 2 */ {Code: ret, K: deny}, // another architecture's calls
		/* 3 */ {Code: ld, K: offNr},
		/* 4 */ {Code: jge, K: x32, Jt: 3, Jf: 0},
		/* 5 */ {Code: jeq, K: unix.SYS_SOCKET, Jt: 2, Jf: 0},
		/* 6 */ {Code: jeq, K: unix.SYS_IO_URING_SETUP, Jt: 1, Jf: 0}, // io_uring can open sockets
		/* 7 */ {Code: ret, K: allow},
		/* 8 */ {Code: ret, K: deny},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seal the network: no_new_privs: %w", err)
	}
	// TSYNC: every thread of the process, not only this one.
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seal the network: seccomp: %w", errno)
	}
	return nil
}

// SealAvailable reports whether SealNetwork can work here: the
// architecture is one it knows and the kernel offers seccomp filters.
func SealAvailable() (bool, string) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return false, ErrSealUnsupported.Error()
	}
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return false, "the kernel offers no seccomp: " + err.Error()
	}
	return true, ""
}
