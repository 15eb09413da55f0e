package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// A syscall made from inside another process, the way a debugger makes
// one: the test attaches to one of the process's threads with ptrace
// (PTRACE_SEIZE, PTRACE_INTERRUPT), finds it stopped just after a syscall
// instruction (a Go thread parked in futex or epoll_wait), points it back
// at that instruction with the syscall's number and arguments, steps over
// it, reads the result and puts every register and byte back. The kernel
// judges the syscall as the process's own, with its Landlock domain and
// its seccomp filters: what the test observes is what a worker taken over
// would get, without a line of test code in the worker.
//
// x86-64 only: the registers and the syscall instruction are the
// architecture's.

// injected is one syscall to make: its number, its arguments, and a string
// the first argument that is a pointer points to (-1: none).
type injected struct {
	nr      uintptr
	args    [6]uintptr
	str     string
	strArg  int
	closeFd bool // the result is a file descriptor to close again
}

// inject makes each syscall in process pid, on one of its threads, and
// returns each result: a non-negative value, or a negated errno.
func injectSyscalls(pid int, calls ...injected) ([]int64, error) {
	runtime.LockOSThread() // ptrace answers the thread that attached only
	defer runtime.UnlockOSThread()
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return nil, err
	}
	var lastErr error = errors.New("no thread")
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		out, err := injectInto(tid, calls)
		if err == nil {
			return out, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no thread of %d could make the syscalls: %w", pid, lastErr)
}

var errNotInSyscall = errors.New("the thread is not stopped at a syscall")

func injectInto(tid int, calls []injected) (results []int64, err error) {
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, 0, 0, 0); e != 0 {
		return nil, fmt.Errorf("ptrace seize %d: %w", tid, e)
	}
	detach := func() { unix.PtraceDetach(tid) }
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, uintptr(tid), 0, 0, 0, 0); e != 0 {
		detach()
		return nil, fmt.Errorf("ptrace interrupt %d: %w", tid, e)
	}
	if err := waitStop(tid); err != nil {
		detach()
		return nil, err
	}
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &saved); err != nil {
		detach()
		return nil, err
	}
	defer func() {
		if rerr := unix.PtraceSetRegs(tid, &saved); rerr != nil && err == nil {
			err = rerr
		}
		detach()
	}()
	// The instruction before the stop must be `syscall` (0f 05).
	insn := make([]byte, 8)
	if _, err := unix.PtracePeekData(tid, uintptr(saved.Rip-2), insn); err != nil {
		return nil, err
	}
	if int64(saved.Orig_rax) < 0 || !bytes.Equal(insn[:2], []byte{0x0f, 0x05}) {
		return nil, errNotInSyscall
	}
	// Strings go on the thread's stack, well below its red zone, and what
	// was there goes back.
	scratch := uintptr(saved.Rsp-1024) &^ 15
	for _, c := range calls {
		regs := saved
		regs.Rip = saved.Rip - 2
		regs.Orig_rax = ^uint64(0) // no syscall to restart
		regs.Rax = uint64(c.nr)
		args := c.args
		if c.strArg >= 0 && c.str != "" {
			buf := append([]byte(c.str), 0)
			old := make([]byte, len(buf))
			if _, err := unix.PtracePeekData(tid, scratch, old); err != nil {
				return nil, err
			}
			if _, err := unix.PtracePokeData(tid, scratch, buf); err != nil {
				return nil, err
			}
			defer unix.PtracePokeData(tid, scratch, old)
			args[c.strArg] = scratch
		}
		regs.Rdi, regs.Rsi, regs.Rdx = uint64(args[0]), uint64(args[1]), uint64(args[2])
		regs.R10, regs.R8, regs.R9 = uint64(args[3]), uint64(args[4]), uint64(args[5])
		r, err := stepSyscall(tid, &regs)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
		if c.closeFd && r >= 0 {
			regs := saved
			regs.Rip, regs.Orig_rax, regs.Rax, regs.Rdi = saved.Rip-2, ^uint64(0), unix.SYS_CLOSE, uint64(r)
			if _, err := stepSyscall(tid, &regs); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// stepSyscall runs the thread from regs over one instruction, the syscall, and
// returns rax.
func stepSyscall(tid int, regs *unix.PtraceRegs) (int64, error) {
	if err := unix.PtraceSetRegs(tid, regs); err != nil {
		return 0, err
	}
	if err := unix.PtraceSingleStep(tid); err != nil {
		return 0, err
	}
	if err := waitStop(tid); err != nil {
		return 0, err
	}
	var after unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &after); err != nil {
		return 0, err
	}
	if after.Rip != regs.Rip+2 {
		return 0, fmt.Errorf("the thread stopped at %#x, not after the syscall at %#x", after.Rip, regs.Rip)
	}
	return int64(after.Rax), nil
}

func waitStop(tid int) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if !ws.Stopped() {
			return fmt.Errorf("thread %d: %v, not stopped", tid, ws)
		}
		return nil
	}
}

// probes are the syscalls the test makes in a worker: reading a file
// outside its grant, opening a socket, and signalling another process.
type probes struct{ open, socket, kill int64 }

func probe(pid int, outside string, other int) (probes, error) {
	const atFDCWD = ^uintptr(99) // AT_FDCWD, -100
	rs, err := injectSyscalls(pid,
		injected{nr: unix.SYS_OPENAT, args: [6]uintptr{atFDCWD, 0, unix.O_RDONLY | unix.O_CLOEXEC}, str: outside, strArg: 1, closeFd: true},
		injected{nr: unix.SYS_SOCKET, args: [6]uintptr{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC}, strArg: -1, closeFd: true},
		injected{nr: unix.SYS_KILL, args: [6]uintptr{uintptr(other), 0}, strArg: -1},
	)
	if err != nil {
		return probes{}, err
	}
	return probes{open: rs[0], socket: rs[1], kill: rs[2]}, nil
}
