//go:build linux

// Command denysyscalls runs a command under a seccomp filter that answers
// the system calls it names with an error, as a container runtime's
// seccomp profile or systemd's SystemCallFilter= does for the calls they
// leave out:
//
//	denysyscalls EPERM landlock,seccomp -- sluice doctor
//
// landlock names the three Landlock calls; the errno is EPERM or ENOSYS.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 5 || os.Args[3] != "--" {
		fmt.Fprintln(os.Stderr, "usage: denysyscalls EPERM|ENOSYS landlock,seccomp -- COMMAND [ARG...]")
		os.Exit(2)
	}
	errno := map[string]syscall.Errno{"EPERM": unix.EPERM, "ENOSYS": unix.ENOSYS}[os.Args[1]]
	if errno == 0 {
		fmt.Fprintln(os.Stderr, "denysyscalls: errno EPERM or ENOSYS, not", os.Args[1])
		os.Exit(2)
	}
	var nrs []uint32
	for _, name := range strings.Split(os.Args[2], ",") {
		switch name {
		case "landlock":
			nrs = append(nrs, unix.SYS_LANDLOCK_CREATE_RULESET, unix.SYS_LANDLOCK_ADD_RULE, unix.SYS_LANDLOCK_RESTRICT_SELF)
		case "seccomp":
			nrs = append(nrs, unix.SYS_SECCOMP)
		default:
			fmt.Fprintln(os.Stderr, "denysyscalls: no call", name)
			os.Exit(2)
		}
	}
	path, err := exec.LookPath(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "denysyscalls:", err)
		os.Exit(2)
	}
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		fmt.Fprintln(os.Stderr, "denysyscalls: no filter for", runtime.GOARCH)
		os.Exit(2)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	deny := unix.SECCOMP_RET_ERRNO | uint32(errno)
	// Another architecture's calls are let through: the command is this
	// architecture's.
	prog := []unix.SockFilter{{Code: ld, K: 4}, {Code: jeq, K: arch, Jt: 1}, {Code: ret, K: unix.SECCOMP_RET_ALLOW}, {Code: ld, K: 0}}
	for _, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: jeq, K: nr, Jf: 1}, unix.SockFilter{Code: ret, K: deny})
	}
	prog = append(prog, unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "denysyscalls: no_new_privs:", err)
		os.Exit(1)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog))); e != 0 {
		fmt.Fprintln(os.Stderr, "denysyscalls: seccomp:", e)
		os.Exit(1)
	}
	runtime.KeepAlive(prog)
	if err := syscall.Exec(path, os.Args[4:], os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "denysyscalls:", err)
		os.Exit(1)
	}
}
