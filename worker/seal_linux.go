//go:build linux

package worker

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSealUnsupported means SealNetwork does not know this architecture's
// system calls; the process was left as it was.
var ErrSealUnsupported = errors.New("sealing the network is not supported on " + runtime.GOARCH)

// SealReportFD is the environment variable naming the descriptor of the
// socket over which a supervisor asks to be handed a worker's attempts to
// open sockets (SealFromEnv).
const SealReportFD = "SLUICE_SEAL_REPORT_FD"

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
func SealNetwork() error { return seal(nil) }

// SealFromEnv seals the process as its supervisor asked: not at all
// without SLUICE_SEAL_NETWORK=1; with SealReportFD set, each socket(2) the
// process tries is put to the supervisor, which records the attempt and
// refuses it (EPERM); without it, the kernel refuses it alone. It reports
// whether the process is sealed.
func SealFromEnv() (bool, error) {
	if os.Getenv("SLUICE_SEAL_NETWORK") != "1" {
		return false, nil
	}
	var report *os.File
	if v := os.Getenv(SealReportFD); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return false, fmt.Errorf("seal the network: %s=%q: want a descriptor number", SealReportFD, v)
		}
		report = os.NewFile(uintptr(fd), "seal-report")
		defer report.Close()
	}
	if err := seal(report); err != nil {
		return false, err
	}
	return true, nil
}

// seal installs the filter. With report, socket(2) is put to a listener
// handed over report; io_uring_setup(2) is refused either way.
func seal(report *os.File) error {
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
		notify = unix.SECCOMP_RET_USER_NOTIF
		offNr  = 0 // struct seccomp_data: int nr; __u32 arch; …
		offArc = 4
		// On amd64, system calls of the x32 ABI carry this bit and the
		// same arch: they would bypass the numbers checked below.
		x32 = 0x40000000
	)
	onSocket := uint32(deny)
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC) // every thread, not only this one
	if report != nil {
		onSocket = notify
		// The listener comes back from seccomp(2); TSYNC with a
		// listener needs TSYNC_ESRCH.
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}
	prog := []unix.SockFilter{
		/* 0 */ {Code: ld, K: offArc},
		/* 1 */ {Code: jeq, K: arch, Jt: 1, Jf: 0},
		/* 2 */ {Code: ret, K: deny}, // another architecture's calls
		/* 3 */ {Code: ld, K: offNr},
		/* 4 */ {Code: jge, K: x32, Jt: 4, Jf: 0}, // → 9
		/* 5 */ {Code: jeq, K: unix.SYS_IO_URING_SETUP, Jt: 3, Jf: 0}, // → 9: io_uring can open sockets
		/* 6 */ {Code: jeq, K: unix.SYS_SOCKET, Jt: 0, Jf: 1}, // → 7, else → 8
		/* 7 */ {Code: ret, K: onSocket},
		/* 8 */ {Code: ret, K: allow},
		/* 9 */ {Code: ret, K: deny},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seal the network: no_new_privs: %w", err)
	}
	listener, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seal the network: seccomp: %w", errno)
	}
	if report == nil {
		return nil
	}
	// Hand the listener over: from here on, only the supervisor answers
	// this process's socket(2) calls.
	defer unix.Close(int(listener))
	if err := unix.Sendmsg(int(report.Fd()), []byte{0}, unix.UnixRights(int(listener)), nil, 0); err != nil {
		return fmt.Errorf("seal the network: hand the listener to the supervisor: %w", err)
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

// seccompNotif and seccompNotifResp are struct seccomp_notif and struct
// seccomp_notif_resp of linux/seccomp.h.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// ServeSealReports is the supervisor's side of SealFromEnv: it takes the
// listener a sealed worker hands over conn, then answers every socket(2)
// the worker tries with EPERM, telling attempt of each ("socket ipv4
// datagram"), until the worker's process is gone. It returns nil when the
// worker exits, and an error when it never handed a listener over.
func ServeSealReports(conn *os.File, attempt func(what string)) error {
	defer conn.Close()
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), buf, oob, 0)
	if err != nil {
		return fmt.Errorf("receive the seal's listener: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return errors.New("the worker exited before it handed its seal's listener over")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return errors.New("the worker handed over no listener")
	}
	listener := fds[0]
	defer unix.Close(listener)
	for {
		pfd := []unix.PollFd{{Fd: int32(listener), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			return nil // POLLHUP: no process uses the filter any more
		}
		var n seccompNotif
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_RECV,
			uintptr(unsafe.Pointer(&n))); errno != 0 {
			if errno == unix.EINTR || errno == unix.ENOENT {
				continue // the caller went away meanwhile
			}
			return nil
		}
		attempt(describeSocket(n.Args[0], n.Args[1]))
		resp := seccompNotifResp{ID: n.ID, Error: -int32(unix.EPERM)}
		// ENOENT: the caller was interrupted; nothing to answer.
		unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	}
}

// describeSocket names the kind of socket socket(2) was asked for.
func describeSocket(domain, typ uint64) string {
	d := map[uint64]string{unix.AF_INET: "ipv4", unix.AF_INET6: "ipv6", unix.AF_UNIX: "unix",
		unix.AF_NETLINK: "netlink", unix.AF_PACKET: "packet"}[domain]
	if d == "" {
		d = "family " + strconv.FormatUint(domain, 10)
	}
	t := map[uint64]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "datagram", unix.SOCK_RAW: "raw",
		unix.SOCK_SEQPACKET: "seqpacket"}[typ&0xf]
	if t == "" {
		t = "type " + strconv.FormatUint(typ&0xf, 10)
	}
	return "socket " + d + " " + t
}
