package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/orchestrator/egress"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// probe is a server the launcher starts: it tries the network from the
// launcher's namespace and prints one line per attempt ("hang" waits
// for its standard input to close).
func probe(what string) int {
	if what == "hang" {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		return 0
	}
	result := func(name string, err error) {
		switch {
		case err == nil:
			fmt.Printf("%s=ok\n", name)
		case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
			fmt.Printf("%s=refused\n", name)
		default:
			fmt.Printf("%s=failed %v\n", name, err)
		}
	}
	dial := func(addr string) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			c.Write([]byte("hello\n"))
			c.Close()
		}
		return err
	}
	result("host", dial(os.Getenv("PROBE_HOST")))
	// UDP, which Landlock does not restrict: an echo from the host's
	// loopback comes back only if the datagram reached it.
	result("udp-host", probeEcho(os.Getenv("PROBE_UDP")))
	result("proxy", dial(os.Getenv("PROBE_PROXY")))
	for _, f := range []struct {
		name   string
		domain int
	}{{"unix", unix.AF_UNIX}, {"netlink", unix.AF_NETLINK}} {
		fd, err := unix.Socket(f.domain, unix.SOCK_DGRAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		result(f.name, err)
	}
	_, err := os.ReadFile(os.Getenv("PROBE_OUTSIDE"))
	result("read-outside", err)
	fmt.Printf("uid=%d\n", os.Getuid())
	return 0
}

// probeEcho sends a datagram to addr and reads the echo.
func probeEcho(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 16))
	return err
}

// A server the launcher starts lives in a network namespace of loopback
// alone: it cannot reach a server listening on the host's loopback, over
// TCP or UDP (the control: this process can), it reaches the proxy's
// listener, which the worker accepts on, it is not root in its
// namespace, and it may not open a unix or netlink socket, nor read
// outside its files. The worker kills it through the launcher.
func TestLauncherNamespace(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	reached := make(chan struct{}, 4)
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			reached <- struct{}{}
			c.Close()
		}
	}()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		b := make([]byte, 16)
		for {
			n, from, err := udp.ReadFrom(b)
			if err != nil {
				return
			}
			udp.WriteTo(b[:n], from)
		}
	}()
	// The control: from here, the host's loopback servers are reached.
	if c, err := net.Dial("tcp", host.Addr().String()); err != nil {
		t.Fatalf("control: %v", err)
	} else {
		c.Close()
		<-reached
	}
	if err := probeEcho(udp.LocalAddr().String()); err != nil {
		t.Fatalf("control: udp echo: %v", err)
	}
	outside := t.TempDir() + "/outside.txt"
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var libs []string
	for _, d := range systemFiles {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			libs = append(libs, d)
		}
	}
	l, err := startLauncher(exe, worker.Confinement{RO: libs, ROFiles: []string{exe}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start the launcher: %v", err)
	}
	defer l.close()
	accepted := make(chan string, 4)
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			accepted <- line
			c.Close()
		}
	}()

	run := func(env ...string) (int, chan struct{}, *os.File, *os.File) {
		t.Helper()
		inR, inW, _ := os.Pipe()
		outR, outW, _ := os.Pipe()
		cmd := exec.Command(exe)
		cmd.Env = env
		pid, exited, err := l.start(cmd, inR, outW, os.Stderr)
		inR.Close()
		outW.Close()
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		return pid, exited, inW, outR
	}
	_, exited, in, out := run("MCP_TEST_PROBE=net", "PROBE_HOST="+host.Addr().String(), "PROBE_UDP="+udp.LocalAddr().String(),
		fmt.Sprintf("PROBE_PROXY=127.0.0.1:%d", l.port), "PROBE_OUTSIDE="+outside)
	defer in.Close()
	b, _ := io.ReadAll(out)
	out.Close()
	<-exited
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for k, want := range map[string]string{"proxy": "ok", "unix": "refused", "netlink": "refused"} {
		if got[k] != want {
			t.Errorf("%s: %q, want %q\n%s", k, got[k], want, b)
		}
	}
	if got["host"] == "ok" || got["udp-host"] == "ok" {
		t.Errorf("the server reached the host's loopback\n%s", b)
	}
	if got["uid"] == "0" {
		t.Errorf("the server runs as root in its namespace\n%s", b)
	}
	if worker.LandlockABI() > 0 && got["read-outside"] != "refused" {
		t.Errorf("read outside its files: %q, want refused", got["read-outside"])
	}
	select {
	case <-reached:
		t.Error("the host's loopback server received a connection from the namespace")
	default:
	}
	select {
	case line := <-accepted:
		if line != "hello\n" {
			t.Errorf("the proxy's listener received %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Error("the proxy's listener accepted nothing")
	}

	// A server that does not exit is killed, through the launcher.
	pid, exited, in, out := run("MCP_TEST_PROBE=hang")
	defer in.Close()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("hang: %q", line)
	}
	l.kill(pid)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the server was not killed")
	}
}

// netBin builds the e2e's network test server once.
var netBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mcp-net-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mcpnet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../e2e/testdata/mcpnet").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build mcpnet: %v\n%s", err, out)
	}
	return bin, nil
})

// A server with network grants, started through its launcher, serves
// one call at a time: while a call's request is at the host, a second
// call waits for the first, and when its time runs out first it fails
// saying so, its request never sent; then the first call completes, its
// request counted as its own by the broker.
func TestServerWithNetworkServesOneCallAtATime(t *testing.T) {
	bin, err := netBin()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	release, inFirst := make(chan struct{}), make(chan struct{})
	var requests atomic.Int32
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			close(inFirst)
			<-release
		}
		io.WriteString(w, "page "+r.URL.Query().Get("call"))
	}))
	defer host.Close()
	// Before the host closes, which waits for its handlers: the first
	// request is let go however the test ends.
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	hostport := strings.TrimPrefix(host.URL, "http://")

	dir := t.TempDir()
	file := filepath.Join(dir, "net.yaml")
	src := "worker: net\nrun: mcp\ncommand: [" + bin + "]\ntools:\n  fetch: {}\ngrants:\n  net: [\"" + hostport + "\"]\nlimits: {timeout: 30s}\n"
	s := New(Config{Manifest: discovered(t, file, src), Path: os.Getenv("PATH"), Self: self})
	defer s.Close()
	if _, err := s.Prepare(); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	broker := egress.New(egress.Config{Grants: map[string][]string{"net": {hostport}},
		Track:        func(worker, msgID, hp string) bool { return true },
		Secrets:      map[string]egress.Secret{"tok": egress.NewSecret("tok", []byte(proxyToken))},
		SecretGrants: map[string][]egress.SecretGrant{"net": {{Name: "tok", Hosts: []string{"127.0.0.1"}}}}})
	defer broker.Close()
	var mu sync.Mutex
	seen := map[string][]string{} // by call, the URLs its requests named
	fetch := func(ctx context.Context, id string) (any, error) {
		c := worker.NewCall("fetch", json.RawMessage(`{"url": "`+host.URL+`/?call=`+id+`"}`),
			func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
				mu.Lock()
				seen[id] = append(seen[id], req.URL)
				mu.Unlock()
				body, _ := json.Marshal(req)
				return broker.Do(ctx, "net", "msg-"+id, body), nil
			})
		return s.Handlers()["fetch"](ctx, c)
	}
	type answer struct {
		out any
		err error
	}
	first := make(chan answer, 1)
	go func() {
		out, err := fetch(context.Background(), "1")
		first <- answer{out, err}
	}()
	select {
	case <-inFirst:
	case a := <-first:
		t.Fatalf("the first call ended before its request reached the host: %v %v", a.out, a.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = fetch(ctx, "2")
	if err == nil || !strings.Contains(err.Error(), "serves one call at a time") {
		t.Fatalf("the second call: %v: want it failed, waiting for the first", err)
	}
	free()
	a := <-first
	if a.err != nil || !strings.Contains(fmt.Sprint(a.out), "status 200: page 1") {
		t.Fatalf("the first call: %v %v", a.out, a.err)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("the host received %d requests, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["1"]) != 1 || !strings.HasSuffix(seen["1"][0], "?call=1") || len(seen["2"]) != 0 {
		t.Fatalf("requests by call: %v: want the first call's own request only", seen)
	}
}
