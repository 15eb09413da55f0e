package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/internal/seal"
	"github.com/sluicehq/sluice/worker"
)

// A stdio server whose manifest grants hosts (grants.net) reaches them
// through the worker's HTTP(S) proxy (proxy.go), and nothing else. The
// worker seals itself off the network before it serves a call, and a seal
// is inherited, so such a server is not started by the worker but by a
// launcher: this binary, run again (LauncherEnv) before the worker
// confines and seals itself, in a user and network namespace of its own
// whose only interface is loopback. The launcher
//
//   - brings loopback up, listens on 127.0.0.1 there, and hands that
//     listener to the worker, which serves the proxy on it;
//   - confines itself as the worker would confine the server (Landlock:
//     the file grant, the command's files, and TCP connect to the
//     proxy's port alone);
//   - seals itself so that socket(2) opens IPv4 and IPv6 sockets only
//     (seal.InetOnly): in that namespace they reach the proxy and
//     nothing else, and a unix socket, which a network namespace does not
//     confine, is refused;
//   - then starts each server on the worker's request, with the proxy in
//     its environment, and kills it on the worker's request.
//
// The worker and the launcher talk over a socket pair (one message a
// datagram, descriptors passed with SCM_RIGHTS): the launcher lives in
// another Landlock domain than the confined worker, which therefore may
// not signal it or its servers, and asks instead.

// LauncherEnv is set, to "1", in the environment of this binary run as a
// launcher; its descriptor 3 is its end of the socket pair.
const LauncherEnv = "SLUICE_MCP_LAUNCHER"

// caFile is the proxy's certificate, in a directory of its own that the
// server may read.
const caFile = "proxy-ca.pem"

// proxyEnv points a server's HTTP clients at the proxy, and its TLS
// clients at the proxy's certificate authority, in the variables the
// common runtimes read: Go, curl and Python's requests (HTTP(S)_PROXY,
// SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), node
// (NODE_EXTRA_CA_CERTS; its fetch reads the proxy variables only when
// told, by NODE_USE_ENV_PROXY, from node 22.21 and 24.5 on).
func proxyEnv(port int, ca string) []string {
	u := "http://127.0.0.1:" + strconv.Itoa(port)
	return []string{"HTTP_PROXY=" + u, "HTTPS_PROXY=" + u, "http_proxy=" + u, "https_proxy=" + u,
		"SSL_CERT_FILE=" + ca, "NODE_EXTRA_CA_CERTS=" + ca, "NODE_USE_ENV_PROXY=1", "REQUESTS_CA_BUNDLE=" + ca, "CURL_CA_BUNDLE=" + ca}
}

// Prepare readies a server started from command: whose manifest grants
// hosts: it makes the proxy and its certificate authority, writes the
// authority's certificate to a directory of its own, and starts the
// launcher, confined to what the server may reach. It must be called
// before the worker confines and seals itself, and it returns the
// directories the worker keeps writable (the certificate's, removed by
// Close). For any other server it does nothing.
//
// A server with network grants serves one call at a time: the calls
// queue, so that each request through the proxy belongs to the one call
// in flight.
func (s *Server) Prepare() ([]string, error) {
	m := s.cfg.Manifest
	if !NeedsNamespace(m) {
		return nil, nil
	}
	p, err := newProxy(m, s.log)
	if err != nil {
		return nil, fmt.Errorf("the proxy's certificate authority: %w", err)
	}
	dir, err := os.MkdirTemp("", "sluice-mcp-proxy-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, caFile), p.caPEM, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	dirs, files, err := Keep(m, s.cfg.Path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	conf := worker.Confinement{RO: append(dirs, dir), ROFiles: files}
	if f := m.Grants.Files; f != nil {
		root, err := filepath.Abs(f.Root)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if f.Write {
			conf.RW = []string{root}
		} else {
			conf.RO = append(conf.RO, root)
		}
	}
	l, err := startLauncher(s.cfg.Self, conf, s.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.launcher, s.proxy, s.caDir, s.one = l, p, dir, make(chan struct{}, 1)
	go p.serve(l.ln)
	return []string{dir}, nil
}

// launcherMsg is one message between the worker and the launcher.
type launcherMsg struct {
	// From the worker: how to confine the launcher (the first message),
	// a server to start (its standard input, output and error go with
	// it), or a server whose process group to kill.
	Confine *worker.Confinement `json:"confine,omitempty"`
	Start   *launchCommand      `json:"start,omitempty"`
	Kill    int                 `json:"kill,omitempty"`
	// From the launcher: the proxy's port (its listener goes with it),
	// a server started, a server exited, or what failed.
	Port   int    `json:"port,omitempty"`
	Pid    int    `json:"pid,omitempty"`
	Exited int    `json:"exited,omitempty"`
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// launchCommand is a server's process, as the worker built it.
type launchCommand struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// send writes one message, with descriptors, over a socket pair.
func send(conn *net.UnixConn, m launcherMsg, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// receive reads one message, and the descriptors that came with it.
func receive(conn *net.UnixConn) (launcherMsg, []*os.File, error) {
	var m launcherMsg
	buf, oob := make([]byte, 256<<10), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, err
	}
	if n == 0 && oobn == 0 {
		return m, nil, io.EOF
	}
	var files []*os.File
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return m, nil, err
	}
	for _, cm := range msgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			return m, nil, err
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "passed"))
		}
	}
	return m, files, json.Unmarshal(buf[:n], &m)
}

// unixConn makes f, one end of a socket pair, a connection.
func unixConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("not a unix socket")
	}
	return uc, nil
}

// launcher is the worker's side of the launcher process.
type launcher struct {
	conn *net.UnixConn
	port int
	ln   net.Listener
	log  *slog.Logger

	// mu makes one request at a time; started carries the answer.
	mu      sync.Mutex
	started chan launcherMsg

	emu    sync.Mutex
	exited map[int]chan struct{}
}

// ErrNoNamespace means the system refused to create the user and network
// namespace a server with network grants runs in.
var ErrNoNamespace = errors.New("this system refuses to create a user namespace, which a stdio MCP server with grants.net runs in (its only network is the worker's proxy): allow unprivileged user namespaces (sysctl user.max_user_namespaces above 0, kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0), or remove grants.net")

// NeedsNamespace says whether the server of manifest m runs in a user and
// network namespace of its own: a server started from its command that
// has network grants.
func NeedsNamespace(m *capabilities.Manifest) bool {
	return m.MCP != nil && m.MCP.URL == "" && len(m.Grants.Net) > 0
}

// ProbeEnv, set to 1, asks the sluice binary to exit at once, doing
// nothing: ProbeNamespace starts it so.
const ProbeEnv = "SLUICE_NAMESPACE_PROBE"

// ProbeNamespace starts self, the sluice binary, in a new user and network
// namespace, as the launcher is started, with ProbeEnv set, and returns
// ErrNoNamespace, with the kernel's answer, when the system refuses to
// make one.
func ProbeNamespace(self string) error {
	cmd := exec.Command(self)
	cmd.Env = []string{ProbeEnv + "=1"}
	cmd.SysProcAttr = inNamespace()
	var err error
	onThread(func() { err = cmd.Run() })
	if err != nil && refused(err) {
		return fmt.Errorf("%w (%v)", ErrNoNamespace, err)
	}
	return err
}

// inNamespace is how a process is started in a new user and network
// namespace, as the launcher is. Inside, it is not root: a server the
// launcher starts gets no capability.
func inNamespace() *syscall.SysProcAttr {
	inner := os.Getuid()
	if inner == 0 {
		inner = 1
	}
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: inner, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: inner, HostID: os.Getgid(), Size: 1}},
	}
}

// refused says whether err is the kernel's answer when it makes no user
// namespace: EPERM (not allowed to this user, or by a seccomp or AppArmor
// profile), ENOSPC (user.max_user_namespaces), EINVAL (no CONFIG_USER_NS),
// EACCES.
func refused(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES)
}

// startLauncher runs self as the launcher, in a user and network namespace
// of its own, confined to conf, and takes the proxy's listener from it.
func startLauncher(self string, conf worker.Confinement, log *slog.Logger) (*launcher, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	theirs := os.NewFile(uintptr(fds[1]), "worker")
	defer theirs.Close()
	ours, err := unixConn(os.NewFile(uintptr(fds[0]), "launcher"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = []string{LauncherEnv + "=1"}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = &stderrLog{log: log.With("from", "launcher"), left: 16 << 10}
	cmd.SysProcAttr = inNamespace()
	// It keeps CAP_NET_ADMIN, in its own namespace, to bring loopback up.
	cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_ADMIN}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGKILL
	onThread(func() { err = cmd.Start() })
	if err != nil {
		ours.Close()
		if refused(err) {
			return nil, fmt.Errorf("%w (%v)", ErrNoNamespace, err)
		}
		return nil, fmt.Errorf("start the MCP server's launcher: %w", err)
	}
	go cmd.Wait()
	l := &launcher{conn: ours, log: log, started: make(chan launcherMsg, 1), exited: map[int]chan struct{}{}}
	if err := l.handshake(conf); err != nil {
		// The launcher reads the end of the pair, and exits.
		ours.Close()
		return nil, err
	}
	go l.read()
	return l, nil
}

// handshake sends the launcher its confinement and takes the proxy's
// listener from it.
func (l *launcher) handshake(conf worker.Confinement) error {
	if err := send(l.conn, launcherMsg{Confine: &conf}); err != nil {
		return fmt.Errorf("the MCP server's launcher: %w", err)
	}
	m, files, err := receive(l.conn)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	switch {
	case err != nil:
		return fmt.Errorf("the MCP server's launcher exited before it was ready: %w", err)
	case m.Error != "":
		return fmt.Errorf("the MCP server's launcher: %s", m.Error)
	case len(files) != 1 || m.Port == 0:
		return errors.New("the MCP server's launcher handed over no listener")
	}
	l.port = m.Port
	l.ln, err = net.FileListener(files[0])
	return err
}

// read takes the launcher's messages until it is gone: then every server
// counts as exited.
func (l *launcher) read() {
	for {
		m, files, err := receive(l.conn)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			l.log.Warn("the MCP server's launcher is gone", "err", err.Error())
			l.emu.Lock()
			for pid, ch := range l.exited {
				close(ch)
				delete(l.exited, pid)
			}
			l.emu.Unlock()
			close(l.started)
			return
		}
		l.emu.Lock()
		switch {
		case m.Exited != 0:
			if ch, ok := l.exited[m.Exited]; ok {
				l.log.Warn("the MCP server exited", "pid", m.Exited, "err", m.Status)
				close(ch)
				delete(l.exited, m.Exited)
			}
			l.emu.Unlock()
			continue
		case m.Pid != 0:
			// Before the exit of this server can be read.
			l.exited[m.Pid] = make(chan struct{})
		}
		l.emu.Unlock()
		l.started <- m
	}
}

// start asks the launcher to start cmd with stdin, stdout and stderr as
// its standard streams; it returns the server's pid and a channel closed
// when it has exited.
func (l *launcher) start(cmd *exec.Cmd, stdin, stdout, stderr *os.File) (int, chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &launchCommand{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir}
	if err := send(l.conn, launcherMsg{Start: c}, stdin, stdout, stderr); err != nil {
		return 0, nil, fmt.Errorf("the MCP server's launcher: %w", err)
	}
	m, ok := <-l.started
	if !ok {
		return 0, nil, errors.New("the MCP server's launcher is gone: the worker cannot start its server again")
	}
	if m.Error != "" {
		return 0, nil, errors.New(m.Error)
	}
	l.emu.Lock()
	defer l.emu.Unlock()
	ch, ok := l.exited[m.Pid]
	if !ok {
		ch = make(chan struct{})
		close(ch)
	}
	return m.Pid, ch, nil
}

// kill asks the launcher to kill the process group of the server pid.
func (l *launcher) kill(pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = send(l.conn, launcherMsg{Kill: pid})
}

// close ends the launcher, which kills its servers and exits.
func (l *launcher) close() {
	l.ln.Close()
	l.conn.Close()
}

// Launch is the launcher's life (LauncherEnv): it reads its orders from
// conn until the worker is gone, then kills its servers. It returns the
// process's exit code.
func Launch(f *os.File, stderr io.Writer) int {
	conn, err := unixConn(f)
	if err != nil {
		fmt.Fprintln(stderr, "sluice mcp launcher:", err)
		return 1
	}
	// Every server is started and killed from this one thread: where
	// Landlock restricts threads one by one, a process may signal only
	// those of its own thread's domain, and Pdeathsig follows the thread
	// that forked.
	runtime.LockOSThread()
	fail := func(err error) int {
		_ = send(conn, launcherMsg{Error: err.Error()})
		fmt.Fprintln(stderr, "sluice mcp launcher:", err)
		return 1
	}
	m, files, err := receive(conn)
	for _, f := range files {
		f.Close()
	}
	if err != nil || m.Confine == nil {
		return fail(fmt.Errorf("no confinement: %v", err))
	}
	ln, err := loopbackListener()
	if err != nil {
		return fail(err)
	}
	lf, err := ln.File()
	if err != nil {
		return fail(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := send(conn, launcherMsg{Port: port}, lf); err != nil {
		return fail(err)
	}
	lf.Close()
	ln.Close()
	if err := confineLauncher(*m.Confine, port); err != nil {
		return fail(err)
	}
	return serveLauncher(conn, stderr)
}

// loopbackListener brings loopback up in the launcher's namespace and
// listens there.
func loopbackListener() (*net.TCPListener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("bring loopback up: %w", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// confineLauncher gives up CAP_NET_ADMIN, restricts the launcher to the
// server's files and the proxy's port, and seals it: sockets of IPv4 and
// IPv6 only.
func confineLauncher(conf worker.Confinement, port int) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	// The only TCP port the server may connect to is the proxy's.
	conf.NATSPort = uint16(port)
	if _, err := worker.Confine(conf); err != nil {
		return err
	}
	if err := seal.InetOnly(); err != nil && !errors.Is(err, seal.ErrUnsupported) {
		return err
	}
	return nil
}

// serveLauncher starts and kills servers as the worker asks, until it is
// gone; then it kills them all.
func serveLauncher(conn *net.UnixConn, stderr io.Writer) int {
	var smu sync.Mutex // one message at a time from the waiters
	reply := func(m launcherMsg) {
		smu.Lock()
		defer smu.Unlock()
		_ = send(conn, m)
	}
	live := map[int]bool{}
	var lmu sync.Mutex
	for {
		m, files, err := receive(conn)
		if err != nil {
			lmu.Lock()
			for pid := range live {
				_ = unix.Kill(-pid, unix.SIGKILL)
			}
			lmu.Unlock()
			return 0
		}
		switch {
		case m.Kill != 0:
			lmu.Lock()
			if live[m.Kill] {
				_ = unix.Kill(-m.Kill, unix.SIGKILL)
			}
			lmu.Unlock()
		case m.Start != nil && len(files) == 3:
			cmd := exec.Command(m.Start.Path)
			cmd.Args, cmd.Env, cmd.Dir = m.Start.Args, m.Start.Env, m.Start.Dir
			cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			err := cmd.Start()
			if err != nil {
				reply(launcherMsg{Error: "start the MCP server: " + err.Error()})
				break
			}
			pid := cmd.Process.Pid
			lmu.Lock()
			live[pid] = true
			lmu.Unlock()
			reply(launcherMsg{Pid: pid})
			go func() {
				err := cmd.Wait()
				lmu.Lock()
				delete(live, pid)
				lmu.Unlock()
				reply(launcherMsg{Exited: pid, Status: errString(err)})
			}()
		default:
			fmt.Fprintln(stderr, "sluice mcp launcher: a message it does not know")
		}
		for _, f := range files {
			f.Close()
		}
	}
}
