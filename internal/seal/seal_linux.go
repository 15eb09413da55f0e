//go:build linux

package seal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported means Network does not know this architecture's
// system calls; the process was left as it was.
var ErrUnsupported = errors.New("sealing the network is not supported on " + runtime.GOARCH)

// ReportFD is the environment variable naming the descriptor of the
// socket over which a supervisor asks to be handed a worker's attempts to
// open sockets (FromEnv).
const ReportFD = "SLUICE_SEAL_REPORT_FD"

// Network makes the process, every thread of it, unable to open a
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
func Network() error { return seal(nil, nil) }

// FromEnv seals the process as its supervisor asked: not at all
// without SLUICE_SEAL_NETWORK=1; with ReportFD set, each socket(2) the
// process tries is put to the supervisor, which records the attempt and
// refuses it (EPERM), and so is each file it opens, which the supervisor
// records when it lies outside roots (the directories of its Confinement)
// and lets the kernel decide; without ReportFD, the kernel refuses
// sockets alone. It reports whether the process is sealed.
func FromEnv(roots []string) (bool, error) {
	if os.Getenv("SLUICE_SEAL_NETWORK") != "1" {
		return false, nil
	}
	var report *os.File
	if v := os.Getenv(ReportFD); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return false, fmt.Errorf("seal the network: %s=%q: want a descriptor number", ReportFD, v)
		}
		report = os.NewFile(uintptr(fd), "seal-report")
		defer report.Close()
	}
	// As the kernel sees them: absolute, symbolic links resolved.
	real := make([]string, 0, len(roots))
	for _, r := range roots {
		if a, err := filepath.Abs(r); err == nil {
			r = a
		}
		if e, err := filepath.EvalSymlinks(r); err == nil && e != r {
			// A path through the link (/lib on a merged /usr) is
			// opened as given: both name the root.
			real = append(real, e)
		}
		real = append(real, r)
	}
	if err := seal(report, real); err != nil {
		return false, err
	}
	return true, nil
}

// A system call a seal puts to the supervisor: its number, and where its
// directory descriptor and path arguments are (dirfd -1: relative paths are
// taken from the working directory).
type watched struct {
	nr          uint32
	dirfd, path int
}

// opens are the calls that open a file by path; openAMD64 (seal_amd64.go)
// adds open(2) where it exists.
var opens = append([]watched{{unix.SYS_OPENAT, 0, 1}, {unix.SYS_OPENAT2, 0, 1}}, openAMD64...)

// auditArch is the architecture a filter checks each system call for.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, ErrUnsupported
}

// seal installs the filter. With report, socket(2) is put to a listener
// handed over report, as are the calls that open files, so that the
// supervisor records those outside roots (the kernel's Landlock rules
// still decide them); io_uring_setup(2) is refused either way.
func seal(report *os.File, roots []string) error {
	arch, err := auditArch()
	if err != nil {
		return err
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
	rules := []struct{ nr, action uint32 }{{unix.SYS_IO_URING_SETUP, deny}} // io_uring can open sockets
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)                        // every thread, not only this one
	if report == nil {
		rules = append(rules, struct{ nr, action uint32 }{unix.SYS_SOCKET, deny})
	} else {
		rules = append(rules, struct{ nr, action uint32 }{unix.SYS_SOCKET, notify})
		for _, w := range opens {
			rules = append(rules, struct{ nr, action uint32 }{w.nr, notify})
		}
		// The listener comes back from seccomp(2); TSYNC with a
		// listener needs TSYNC_ESRCH.
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}
	// 0 arch; 1–2 another architecture's calls are refused; 3 nr; 4 x32
	// → the last instruction; then a test and a return per rule; allow;
	// deny.
	prog := []unix.SockFilter{
		{Code: ld, K: offArc},
		{Code: jeq, K: arch, Jt: 1, Jf: 0},
		{Code: ret, K: deny},
		{Code: ld, K: offNr},
		{Code: jge, K: x32, Jt: uint8(2*len(rules) + 1), Jf: 0},
	}
	for _, r := range rules {
		prog = append(prog, unix.SockFilter{Code: jeq, K: r.nr, Jt: 0, Jf: 1}, unix.SockFilter{Code: ret, K: r.action})
	}
	prog = append(prog, unix.SockFilter{Code: ret, K: allow}, unix.SockFilter{Code: ret, K: deny})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seal the network: no_new_privs: %w", err)
	}
	// What the supervisor needs to tell an open outside the grant.
	hello, err := json.Marshal(sealHello{Roots: roots})
	if err != nil {
		return err
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
	// this process's socket(2) calls, and sees its opens.
	defer unix.Close(int(listener))
	if err := unix.Sendmsg(int(report.Fd()), hello, unix.UnixRights(int(listener)), nil, 0); err != nil {
		return fmt.Errorf("seal the network: hand the listener to the supervisor: %w", err)
	}
	return nil
}

// sealHello goes with the listener: the directories the worker may reach.
type sealHello struct {
	Roots []string `json:"roots"`
}

// Available reports whether Network and FromEnv can work here: the
// architecture is one they know, the kernel offers seccomp filters with
// user notification (the supervisor's reports), and no seccomp filter
// already on this process (a container runtime's profile, systemd's
// SystemCallFilter=) refuses seccomp(2). It asks the kernel without
// installing anything.
func Available() (bool, string) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return false, ErrUnsupported.Error()
	}
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return false, "the kernel offers no seccomp: " + err.Error()
	}
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	switch {
	case errno == 0:
		return true, ""
	case errno == unix.EPERM || errno == unix.EACCES || errno == unix.ENOSYS:
		return false, "a seccomp filter on this process refuses seccomp(2) (" + errno.Error() + "): allow it in the container's seccomp profile or the unit's SystemCallFilter="
	case errno == unix.EOPNOTSUPP:
		return false, "the kernel offers no seccomp user notification (Linux 5.0 or later)"
	default:
		return false, "seccomp(2): " + errno.Error()
	}
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

// ServeReports is the supervisor's side of FromEnv: it takes the
// listener a sealed worker hands over conn, then answers every socket(2)
// the worker tries with EPERM, telling attempt of each (op "socket", what
// "socket ipv4 datagram"), and lets every file it opens go on to the
// kernel, telling attempt of those outside the worker's roots (op "open",
// what "open /etc/shadow"), until
// the worker's process is gone. It returns nil when the worker exits, and
// an error when it never handed a listener over.
func ServeReports(conn *os.File, attempt func(op, what string)) error {
	defer conn.Close()
	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(conn.Fd()), buf, oob, 0)
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
	var hello sealHello
	if err := json.Unmarshal(buf[:n], &hello); err != nil {
		return fmt.Errorf("the worker's seal: %w", err)
	}
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
		resp := seccompNotifResp{ID: n.ID}
		if uint32(n.Nr) == unix.SYS_SOCKET {
			attempt("socket", describeSocket(n.Args[0], n.Args[1]))
			resp.Error = -int32(unix.EPERM)
		} else {
			// An open: the kernel decides it (Landlock); the
			// supervisor only tells of one outside the roots.
			// A file that does not exist is not told of: the kernel
			// answers ENOENT whatever the grant.
			if p, named, ok := openedPath(listener, &n); ok && !within(p, hello.Roots) && !ownStat(listener, &n, named) {
				if _, err := os.Lstat(p); err == nil {
					attempt("open", "open "+p)
				}
			}
			resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		}
		// ENOENT: the caller was interrupted; nothing to answer.
		unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	}
}

// openedPath reads the path an open call names from the caller's memory
// and makes it absolute, from its directory descriptor or working
// directory; named is the path exactly as the call named it. It is what
// the call named, not what it reached: a symbolic link is not followed.
func openedPath(listener int, n *seccompNotif) (abs, named string, ok bool) {
	var w watched
	for _, o := range opens {
		if o.nr == uint32(n.Nr) {
			w = o
		}
	}
	if w.nr == 0 {
		return "", "", false
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", n.Pid))
	if err != nil {
		return "", "", false
	}
	defer mem.Close()
	b := make([]byte, unix.PathMax)
	k, _ := mem.ReadAt(b, int64(n.Args[w.path]))
	path, _, found := strings.Cut(string(b[:k]), "\x00")
	// The caller is still the process that made the call (its pid was not
	// reused while its memory was read).
	id := n.ID
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_ID_VALID,
		uintptr(unsafe.Pointer(&id))); errno != 0 || !found || path == "" {
		return "", "", false
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path), path, true
	}
	dir := fmt.Sprintf("/proc/%d/cwd", n.Pid)
	if w.dirfd >= 0 && int32(n.Args[w.dirfd]) != unix.AT_FDCWD {
		dir = fmt.Sprintf("/proc/%d/fd/%d", n.Pid, int32(n.Args[w.dirfd]))
	}
	base, err := os.Readlink(dir)
	if err != nil {
		return "", "", false
	}
	return filepath.Join(base, path), path, true
}

// ownStat reports whether named, the path an open call named, is the
// calling process's own stat file: /proc/self/stat, /proc/thread-self/stat,
// or /proc/PID/stat with the caller's process or thread id, spelled exactly
// so (absolute, no "." or "..", no other link on the way than /proc/self).
//
// A worker reads its own: the NATS server package, linked into the one
// binary, samples its process's CPU time from that file a second after
// start (nats-server/v2/server/pse). What a process reads of its own stat
// it knows already; it is not an attempt, and no record is made of it.
// The kernel still decides the open (Landlock refuses it), and any other
// process's entry, or any other file of its own, is told as before; so
// are the files a runtime sizes itself by (sizing), named exactly.
func ownStat(listener int, n *seccompNotif, named string) bool {
	switch named {
	case "/proc/self/stat", "/proc/thread-self/stat":
		return true
	}
	if sizing[named] {
		return true
	}
	rest, ok := strings.CutPrefix(named, "/proc/")
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, "/stat")
	if !ok || id == "" || strings.TrimLeft(id, "0123456789") != "" || id[0] == '0' {
		return false
	}
	pid, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return false
	}
	if uint32(pid) == n.Pid { // the calling thread's own id
		return true
	}
	// The process the calling thread belongs to.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.Pid))
	if err != nil {
		return false
	}
	tgid := ""
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			tgid = strings.TrimSpace(v)
			break
		}
	}
	// The caller is still the thread that made the call, so the status
	// read was its own (its id was not reused meanwhile).
	nid := n.ID
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_ID_VALID,
		uintptr(unsafe.Pointer(&nid))); errno != 0 {
		return false
	}
	return tgid == id
}

// sizing are the files a runtime reads, as it starts, of itself and of
// the machine it runs on, to size its heap and its thread pool (node does,
// in an MCP server, some at once and some later, and so does Go's): refused by Landlock like
// any file outside the grant, and no attempt to report. None names a
// secret, and each is named exactly: a path below /proc/self reaches the
// whole file system (/proc/self/root/…), so nothing is matched by prefix.
var sizing = map[string]bool{
	"/proc/self/maps": true, "/proc/self/cgroup": true,
	"/proc/meminfo": true, "/proc/stat": true, "/proc/cpuinfo": true,
	"/proc/sys/vm/overcommit_memory": true,
	"/sys/devices/system/cpu/online": true, "/sys/devices/system/cpu/possible": true,
	"/sys/fs/cgroup/cpu.max": true, "/sys/fs/cgroup/memory.max": true,
	// The Go runtime, for the size of a huge page (an MCP server in Go).
	"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size": true,
}

// within reports whether path is one of roots or below one.
func within(path string, roots []string) bool {
	for _, r := range roots {
		r = filepath.Clean(r)
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) || r == "/" {
			return true
		}
	}
	return false
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

// InetOnly lets the process, every thread of it and every process it
// starts, open IPv4 and IPv6 sockets only, for the rest of its life:
// socket(2) for any other family (unix, netlink, packet, …) and
// io_uring_setup(2) fail with EPERM.
//
// It is the seal of a process that lives in a network namespace whose
// only interface is loopback: there, an IPv4 or IPv6 socket reaches
// nothing but what listens on that loopback, and a unix socket, which
// a network namespace does not confine (a path names it), is refused.
func InetOnly() error {
	arch, err := auditArch()
	if err != nil {
		return err
	}
	const (
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
		deny  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		// struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64
		// args[6]. The family is an int: the low word of args[0] on
		// these little-endian architectures.
		offArg0 = 16
		x32     = 0x40000000
	)
	prog := []unix.SockFilter{
		/* 0 */ {Code: ld, K: 4},
		/* 1 */ {Code: jeq, K: arch, Jt: 1},
		/* 2 */ {Code: ret, K: deny},
		/* 3 */ {Code: ld, K: 0},
		/* 4 */ {Code: jge, K: x32, Jt: 7}, // → 12
		/* 5 */ {Code: jeq, K: unix.SYS_IO_URING_SETUP, Jt: 6}, // → 12
		/* 6 */ {Code: jeq, K: unix.SYS_SOCKET, Jf: 4}, // → 11
		/* 7 */ {Code: ld, K: offArg0},
		/* 8 */ {Code: jeq, K: unix.AF_INET, Jt: 2}, // → 11
		/* 9 */ {Code: jeq, K: unix.AF_INET6, Jt: 1}, // → 11
		/* 10 */ {Code: ret, K: deny},
		/* 11 */ {Code: ret, K: allow},
		/* 12 */ {Code: ret, K: deny},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seal the network: no_new_privs: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seal the network: seccomp: %w", errno)
	}
	return nil
}
