package worker

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The confined process is this test binary, run again as a child, since a
// confinement cannot be undone.
func TestMain(m *testing.M) {
	if os.Getenv("CONFINE_CHILD") != "" {
		os.Exit(confinedChild())
	}
	os.Exit(m.Run())
}

// confinedChild confines itself as a worker would, then tries what a
// compromised worker would try; it prints one line per attempt.
func confinedChild() int {
	port, _ := strconv.Atoi(os.Getenv("CONFINE_PORT"))
	abi, err := Confine(Confinement{NATSPort: uint16(port), RW: []string{os.Getenv("CONFINE_RW")}})
	if err != nil {
		println("confine:", err.Error())
		return 2
	}
	report := func(what string, err error) { os.Stdout.WriteString(what + "=" + errString(err) + "\n") }
	_, err = os.ReadFile(os.Getenv("CONFINE_SECRET"))
	report("read-outside", err)
	err = os.WriteFile(filepath.Join(os.Getenv("CONFINE_RW"), "ok.txt"), []byte("x"), 0o600)
	report("write-inside", err)
	c, err := net.Dial("tcp", os.Getenv("CONFINE_OTHER"))
	if err == nil {
		c.Close()
	}
	report("connect-other", err)
	c, err = net.Dial("tcp", "127.0.0.1:"+os.Getenv("CONFINE_PORT"))
	if err == nil {
		c.Close()
	}
	report("connect-bus", err)
	ppid := os.Getppid()
	err = syscall.Kill(ppid, syscall.Signal(0))
	report("signal-parent", err)
	os.Stdout.WriteString("abi=" + strconv.Itoa(abi) + "\n")
	return 0
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return "refused"
	}
	return "error:" + err.Error()
}

func TestConfine(t *testing.T) {
	if LandlockABI() < 6 {
		t.Skipf("the kernel offers Landlock ABI %d; this test needs 6 (files, TCP, signals)", LandlockABI())
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("client credential"), 0o600)
	rw := filepath.Join(dir, "data")
	os.Mkdir(rw, 0o700)
	bus, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	go func() {
		for {
			c, err := bus.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CONFINE_CHILD=1", "CONFINE_SECRET="+secret, "CONFINE_RW="+rw,
		"CONFINE_PORT="+strconv.Itoa(bus.Addr().(*net.TCPAddr).Port), "CONFINE_OTHER="+strings.TrimPrefix(other.URL, "http://"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	want := map[string]string{"read-outside": "refused", "write-inside": "ok", "connect-other": "refused",
		"connect-bus": "ok", "signal-parent": "refused"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}
