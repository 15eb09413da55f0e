//go:build linux

package seal

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sealedChild holds a connection, as a worker holds the bus, seals the
// network, and tries what a worker taken over would try to send what it
// holds away; it prints one line per attempt.
func sealedChild() int {
	bus, err := net.Dial("tcp", os.Getenv("SEAL_BUS"))
	if err != nil {
		println("dial bus:", err.Error())
		return 2
	}
	// As a worker is started: SLUICE_SEAL_NETWORK=1, and with a report
	// descriptor when the test serves reports.
	if sealed, err := FromEnv([]string{os.Getenv("SEAL_ROOT")}); err != nil || !sealed {
		println("seal:", sealed, errString(err))
		return 2
	}
	report := func(what string, err error) { os.Stdout.WriteString(what + "=" + errString(err) + "\n") }
	_, err = os.ReadFile(filepath.Join(os.Getenv("SEAL_ROOT"), "inside.txt"))
	report("read-inside", err)
	// Relative to the working directory, which is outside the root.
	_, err = os.ReadFile("outside.txt")
	report("read-outside", err)
	_, err = bus.Write([]byte("still here\n"))
	report("bus-write", err)
	c, err := net.Dial("tcp", os.Getenv("SEAL_OTHER"))
	if err == nil {
		c.Write([]byte("STOLEN over TCP\n"))
		c.Close()
	}
	report("tcp-other", err)
	c, err = net.Dial("tcp", os.Getenv("SEAL_BUS"))
	if err == nil {
		c.Close()
	}
	report("tcp-bus-again", err)
	c, err = net.Dial("udp", os.Getenv("SEAL_UDP"))
	if err == nil {
		c.Write([]byte("STOLEN over UDP"))
		c.Close()
	}
	report("udp", err)
	c, err = net.Dial("unix", os.Getenv("SEAL_UNIX"))
	if err == nil {
		c.Close()
	}
	report("unix", err)
	// Its own stat file, by every name, as the NATS server package reads
	// it, and what a runtime reads of itself as it starts (not told); the
	// test process's stat, and another file of its own (both told).
	pid := os.Getpid()
	runtime.LockOSThread()
	for _, f := range []string{"/proc/self/stat", "/proc/thread-self/stat", "/proc/self/maps", "/proc/self/cgroup", "/proc/meminfo", fmt.Sprintf("/proc/%d/stat", pid),
		fmt.Sprintf("/proc/%d/stat", unix.Gettid()), fmt.Sprintf("/proc/%d/stat", os.Getppid()), fmt.Sprintf("/proc/%d/status", pid)} {
		_, err = os.ReadFile(f)
		report("read "+f, err)
	}
	runtime.UnlockOSThread()
	os.Stdout.WriteString(fmt.Sprintf("pid=%d\n", pid))
	return 0
}

// A sealed process keeps the connection it holds and can open no other
// socket: TCP to another port, the bus's address again, UDP, a Unix socket.
// The control: the same attempts succeed from this (unsealed) process.
// With a supervisor serving its reports, each attempt is also told to it.
func TestSealNetwork(t *testing.T) {
	t.Run("refused by the kernel", func(t *testing.T) { testSeal(t, false) })
	t.Run("reported to the supervisor", func(t *testing.T) { testSeal(t, true) })
}

func testSeal(t *testing.T, reports bool) {
	bus, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	got := make(chan string, 1)
	go func() {
		c, err := bus.Accept()
		if err != nil {
			return
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	stolen := make(chan struct{}, 4)
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			stolen <- struct{}{}
			c.Close()
		}
	}()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sock := t.TempDir() + "/s.sock"
	unixL, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unixL.Close()

	// The control: unsealed, each of these works.
	for _, d := range [][2]string{{"tcp", other.Addr().String()}, {"udp", udp.LocalAddr().String()}, {"unix", sock}} {
		c, err := net.Dial(d[0], d[1])
		if err != nil {
			t.Fatalf("control: %s %s: %v", d[0], d[1], err)
		}
		c.Close()
	}
	<-stolen

	root, outside := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(root, "inside.txt"), filepath.Join(outside, "outside.txt")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = outside
	cmd.Env = append(os.Environ(), "SEAL_CHILD=1", "SLUICE_SEAL_NETWORK=1", "SEAL_ROOT="+root, "SEAL_BUS="+bus.Addr().String(),
		"SEAL_OTHER="+other.Addr().String(), "SEAL_UDP="+udp.LocalAddr().String(), "SEAL_UNIX="+sock)
	var reported []string
	served := make(chan error, 1)
	if reports {
		// The supervisor's side: a socket pair, one end to the child.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
		cmd.ExtraFiles = []*os.File{theirs}
		cmd.Env = append(cmd.Env, ReportFD+"=3")
		go func() {
			served <- ServeReports(ours, func(_, what string) { reported = append(reported, what) })
		}()
		defer theirs.Close()
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sealed child: %v\n%s", err, out)
	}
	if reports {
		// ServeReports returns once the child is gone.
		if err := <-served; err != nil {
			t.Fatalf("serve the seal's reports: %v", err)
		}
		// The child has no Landlock here: the read outside succeeds, and
		// is told all the same; the read inside is not.
		// Of the /proc files, the child's own stat is not told; the
		// parent's stat and the child's own status are.
		var pid string
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "pid="); ok {
				pid = v
			}
		}
		want := []string{"open " + filepath.Join(outside, "outside.txt"), "socket ipv4 stream", "socket ipv4 stream",
			"socket ipv4 datagram", "socket unix stream",
			fmt.Sprintf("open /proc/%d/stat", os.Getpid()), "open /proc/" + pid + "/status"}
		var got []string
		for _, r := range reported {
			if strings.HasPrefix(r, "socket ") || strings.HasSuffix(r, ".txt") || strings.HasPrefix(r, "open /proc/") {
				got = append(got, r)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("reported %q, want %q", reported, want)
		}
	}
	// No Landlock in the child: a refusal here is the seal's EPERM.
	want := map[string]string{"read-inside": "ok", "read-outside": "ok", "bus-write": "ok", "tcp-other": "refused", "tcp-bus-again": "refused", "udp": "refused", "unix": "refused"}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		if w, ok := want[k]; ok {
			if v != w {
				t.Errorf("%s: %s, want %s", k, v, w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Fatalf("attempts not reported: %v\n%s", want, out)
	}
	select {
	case line := <-got:
		if line != "still here\n" {
			t.Errorf("the bus connection carried %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Error("the connection held before sealing stopped working")
	}
	select {
	case <-stolen:
		t.Error("the sealed process reached another TCP port")
	default:
	}
	udp.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := udp.ReadFrom(make([]byte, 64)); err == nil {
		t.Errorf("the sealed process sent a datagram (%d bytes)", n)
	}
}
