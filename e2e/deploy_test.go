package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deployment files of examples/deploy (docs/operations.md,
// "Deploying"): the image, the compose file with its NATS cluster, and the
// systemd unit. TestDeployFiles needs neither Docker nor systemd; the
// image is built, and the unit verified, where their tools are.

const deployDir = "../examples/deploy"

func readDeploy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goModVersion returns the go line of go.mod, or the version of the module
// required there (without its v).
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + ` v?(\S+)`)
	m := re.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("go.mod names no %s", module)
	}
	return m[1]
}

// checkSluiceCommand checks a sluice command line written in a deployment
// file (args without the binary): sluice takes its command and every flag
// (it answers --help after them with exit 0, and exits 2 on a flag it does
// not take), and a web page is served on loopback or not at all.
func checkSluiceCommand(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no sluice command", where)
		return
	}
	out, err := runBounded(exec.Command(sluiceBin, append(slices.Clone(args), "--help")...))
	if err != nil {
		t.Errorf("%s: sluice %s: not a command line sluice takes (%v):\n%s", where, strings.Join(args, " "), err, out)
	}
	for i, a := range args {
		addr, ok := strings.CutPrefix(a, "--http=")
		if !ok && a == "--http" && i+1 < len(args) {
			addr, ok = args[i+1], true
		}
		if !ok || addr == "off" {
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			t.Errorf("%s: --http %s: sluice up serves its page on loopback only", where, addr)
		}
	}
}

// writeSecret writes a file of mode 0600, as sluice wants its secrets.
func writeSecret(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lintConfig runs sluice lint on a configuration file.
func lintConfig(t *testing.T, where, config string) {
	t.Helper()
	out, err := runBounded(exec.Command(sluiceBin, "lint", "--config", config))
	if err != nil {
		t.Errorf("%s: sluice lint --config %s: %v\n%s", where, config, err, out)
	}
}

// dockerfile is what TestDeployFiles reads of a Dockerfile: its
// instructions, each on one line, with their arguments.
type dockerfile [][2]string

func parseDockerfile(src string) dockerfile {
	var d dockerfile
	var cur string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if cur == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur += s + " "
			continue
		}
		cur += l
		op, rest, _ := strings.Cut(cur, " ")
		d = append(d, [2]string{strings.ToUpper(op), strings.TrimSpace(rest)})
		cur = ""
	}
	return d
}

func (d dockerfile) all(op string) []string {
	var out []string
	for _, in := range d {
		if in[0] == op {
			out = append(out, in[1])
		}
	}
	return out
}

// exec reads an instruction in exec form (a JSON array).
func (d dockerfile) exec(t *testing.T, op string) []string {
	t.Helper()
	v := d.all(op)
	if len(v) != 1 {
		t.Fatalf("Dockerfile: %d %s instructions, want 1", len(v), op)
	}
	var args []string
	if err := json.Unmarshal([]byte(v[0]), &args); err != nil {
		t.Fatalf("Dockerfile: %s %s: want the exec form (a JSON array), which needs no shell: %v", op, v[0], err)
	}
	return args
}

func TestDeployFiles(t *testing.T) {
	t.Run("Dockerfile", testDeployDockerfile)
	t.Run("compose", testDeployCompose)
	t.Run("unit", testDeployUnit)
}

func testDeployDockerfile(t *testing.T) {
	d := parseDockerfile(readDeploy(t, "Dockerfile"))
	froms := d.all("FROM")
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a run stage", len(froms))
	}
	goVersion := goModVersion(t, "go")
	if !slices.Contains(d.all("ARG"), "GO_VERSION="+goVersion) || !strings.HasPrefix(froms[0], "golang:${GO_VERSION}") {
		t.Errorf("Dockerfile: the build stage is %q with ARG %v: want golang:${GO_VERSION} with GO_VERSION=%s, go.mod's go line", froms[0], d.all("ARG"), goVersion)
	}
	if last := froms[len(froms)-1]; !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("Dockerfile: runs on %q: want distroless/static or scratch, which have no shell", last)
	}
	build := strings.Join(d.all("RUN"), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/sluice", "sluice lint --config examples/deploy/sluice.yaml"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: the build does not run %q", want)
		}
	}
	// The version is set as the Makefile sets it.
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	xs := regexp.MustCompile(`-X (main\.\w+)=`)
	var want, got []string
	for _, m := range xs.FindAllStringSubmatch(regexp.MustCompile(`(?m)^LDFLAGS.*$`).FindString(string(mk)), -1) {
		want = append(want, m[1])
	}
	for _, m := range xs.FindAllStringSubmatch(build, -1) {
		got = append(got, m[1])
	}
	if len(want) == 0 || !slices.Equal(want, got) {
		t.Errorf("Dockerfile: sets %v with -X, the Makefile %v", got, want)
	}
	if users := d.all("USER"); len(users) != 1 || strings.HasPrefix(users[0], "root") || strings.HasPrefix(users[0], "0") {
		t.Errorf("Dockerfile: USER %v: want one user, not root", users)
	}
	// Files copied from the context exist there.
	for _, c := range d.all("COPY") {
		fields := strings.Fields(c)
		if slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(f, "--from=") }) {
			continue
		}
		var srcs []string
		for _, f := range fields[:len(fields)-1] {
			if !strings.HasPrefix(f, "--") {
				srcs = append(srcs, f)
			}
		}
		for _, s := range srcs {
			if _, err := os.Stat(filepath.Join("..", s)); err != nil {
				t.Errorf("Dockerfile: COPY %s: %v", s, err)
			}
		}
	}
	entry := d.exec(t, "ENTRYPOINT")
	if len(entry) != 1 || filepath.Base(entry[0]) != "sluice" {
		t.Fatalf("Dockerfile: ENTRYPOINT %v: want the sluice binary alone", entry)
	}
	checkSluiceCommand(t, "Dockerfile CMD", d.exec(t, "CMD"))
	if !slices.Contains(d.all("VOLUME"), "/var/lib/sluice") {
		t.Errorf("Dockerfile: VOLUME %v: want the state directory, /var/lib/sluice", d.all("VOLUME"))
	}
	cfg := readDeploy(t, "sluice.yaml")
	if !strings.Contains(cfg, "\nstate: /var/lib/sluice\n") {
		t.Errorf("examples/deploy/sluice.yaml: state is not /var/lib/sluice, the image's volume and the unit's StateDirectory")
	}
	lintConfig(t, "the image's sluice.yaml", filepath.Join(deployDir, "sluice.yaml"))
}

// compose is what TestDeployFiles reads of compose.yaml.
type compose struct {
	Services map[string]struct {
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Build   struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Secrets     []string          `yaml:"secrets"`
		SecurityOpt []string          `yaml:"security_opt"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

func testDeployCompose(t *testing.T) {
	dir := filepath.Join(deployDir, "compose")
	src, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(src, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	natsImage := "nats:" + goModVersion(t, "github.com/nats-io/nats-server/v2")
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("nats-%d", i)
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("compose.yaml: no service %s", name)
		}
		if s.Image != natsImage {
			t.Errorf("compose.yaml: %s runs %s: want %s, the server of go.mod", name, s.Image, natsImage)
		}
		if s.Environment["NATS_NAME"] != name {
			t.Errorf("compose.yaml: %s: NATS_NAME=%q, want %q", name, s.Environment["NATS_NAME"], name)
		}
		for _, f := range []string{"./nats.conf:/etc/nats/nats.conf:ro", "./resolver.conf:/etc/nats/resolver.conf:ro"} {
			if !slices.Contains(s.Volumes, f) {
				t.Errorf("compose.yaml: %s does not mount %s", name, f)
			}
		}
	}
	s, ok := c.Services["sluice"]
	if !ok {
		t.Fatal("compose.yaml: no service sluice")
	}
	if _, err := os.Stat(filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)); err != nil {
		t.Errorf("compose.yaml: sluice is built from %s in %s: %v", s.Build.Dockerfile, s.Build.Context, err)
	}
	checkSluiceCommand(t, "compose.yaml sluice command", s.Command)
	if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("compose.yaml: sluice runs without no-new-privileges")
	}
	if !slices.Contains(s.Volumes, "./sluice.yaml:/etc/sluice/sluice.yaml:ro") {
		t.Fatalf("compose.yaml: sluice does not mount ./sluice.yaml as its configuration")
	}

	// The configuration loads, with the secrets compose.yaml gives it.
	m := newOperatorMode(t)
	tmp := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	content := map[string][]byte{}
	for _, name := range s.Secrets {
		sec, ok := c.Secrets[name]
		if !ok {
			t.Errorf("compose.yaml: sluice uses the secret %s, which is not defined", name)
			continue
		}
		switch filepath.Base(sec.File) {
		case "account.nk":
			content[name] = m.signingSeed
		case "orchestrator.creds":
			content[name] = m.orchestratorCred
		default:
			t.Errorf("compose.yaml: secret %s: file %s is neither account.nk nor orchestrator.creds, as docs/operations.md names them", name, sec.File)
		}
	}
	mounted := regexp.MustCompile(`/run/secrets/(\w+)`)
	for _, ref := range mounted.FindAllStringSubmatch(string(cfg), -1) {
		if _, ok := content[ref[1]]; !ok {
			t.Errorf("compose/sluice.yaml: %s is not a secret compose.yaml gives the sluice service", ref[0])
		}
	}
	cfg = mounted.ReplaceAllFunc(cfg, func(ref []byte) []byte {
		name := string(mounted.FindSubmatch(ref)[1])
		p := filepath.Join(tmp, "secrets", name)
		writeSecret(t, p, content[name])
		return []byte(p)
	})
	writeSecret(t, filepath.Join(tmp, "sluice.yaml"), cfg)
	lintConfig(t, "compose/sluice.yaml", filepath.Join(tmp, "sluice.yaml"))

	// Each node's configuration is one nats-server takes, with the
	// resolver.conf nsc would write.
	natsConf, err := os.ReadFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, filepath.Join(tmp, "nats", "nats.conf"), natsConf)
	writeSecret(t, filepath.Join(tmp, "nats", "resolver.conf"), fmt.Appendf(nil,
		"operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		m.operatorJWT, m.sysPub, m.accPub, m.accJWT, m.sysPub, m.sysJWT))
	bin := buildNATSServer(t)
	for i := 1; i <= 3; i++ {
		cmd := exec.Command(bin, "-c", filepath.Join(tmp, "nats", "nats.conf"), "-t")
		cmd.Env = append(os.Environ(), fmt.Sprintf("NATS_NAME=nats-%d", i))
		if out, err := runBounded(cmd); err != nil {
			t.Errorf("compose/nats.conf as nats-%d: nats-server -t: %v\n%s", i, err, out)
		}
	}
}

// unit reads a systemd unit: each key with its values in order.
func unit(t *testing.T, src string) map[string][]string {
	t.Helper()
	u := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("sluice.service: %q: not KEY=VALUE", l)
		}
		u[k] = append(u[k], v)
	}
	return u
}

func testDeployUnit(t *testing.T) {
	u := unit(t, readDeploy(t, "sluice.service"))
	for k, want := range map[string]string{
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
		"User": "sluice", "StateDirectory": "sluice", "ExecReload": "/bin/kill -HUP $MAINPID",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "SystemCallArchitectures": "native",
	} {
		if !slices.Contains(u[k], want) {
			t.Errorf("sluice.service: %s=%v, want %s", k, u[k], want)
		}
	}
	if len(u["SystemCallFilter"]) == 0 {
		t.Errorf("sluice.service: no SystemCallFilter")
	}
	start := strings.Fields(strings.Join(u["ExecStart"], " "))
	if len(start) < 2 || start[0] != "/usr/local/bin/sluice" {
		t.Fatalf("sluice.service: ExecStart %v: want /usr/local/bin/sluice and its arguments", start)
	}
	checkSluiceCommand(t, "sluice.service ExecStart", start[1:])
	if !slices.Contains(start, "/etc/sluice/sluice.yaml") {
		t.Errorf("sluice.service: ExecStart %v does not name /etc/sluice/sluice.yaml, where docs/operations.md installs examples/deploy/sluice.yaml", start)
	}
}

// confinementCalls are the system calls with which a worker confines itself
// (Landlock), seals itself off the network (seccomp, with the listener it
// hands to the supervisor) and is started: a SystemCallFilter that refuses
// one of them leaves workers unconfined, or unable to start.
var confinementCalls = []string{"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"seccomp", "prctl", "ioctl", "sendmsg", "recvmsg", "socketpair", "execve", "clone", "wait4"}

// TestDeploySystemdUnit verifies the unit with systemd-analyze, and checks
// that its system call filter lets the workers confine and seal
// themselves.
func TestDeploySystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed: the unit is not verified (TestDeployFiles still reads it)")
	}
	src := readDeploy(t, "sluice.service")
	dir := t.TempDir()
	// verify checks that ExecStart's binary exists.
	p := filepath.Join(dir, "sluice.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(src, "/usr/local/bin/sluice", sluiceBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runBounded(exec.Command("systemd-analyze", "verify", p))
	// verify exits 0 on unknown keys and values, which it ignores with a
	// warning: any line about the unit fails the test.
	if err != nil || strings.Contains(string(out), "sluice.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	allowed := map[string]bool{}
	for _, f := range unit(t, src)["SystemCallFilter"] {
		deny := strings.HasPrefix(f, "~")
		for _, name := range strings.Fields(strings.TrimPrefix(f, "~")) {
			for _, call := range expandSyscalls(t, name, map[string]bool{}) {
				allowed[call] = !deny
			}
		}
	}
	for _, call := range confinementCalls {
		if !allowed[call] {
			t.Errorf("sluice.service: SystemCallFilter refuses %s", call)
		}
	}
}

// expandSyscalls lists the system calls a SystemCallFilter name stands for:
// itself, or every call of a group (@name), as systemd-analyze says.
func expandSyscalls(t *testing.T, name string, seen map[string]bool) []string {
	t.Helper()
	if !strings.HasPrefix(name, "@") {
		return []string{name}
	}
	if seen[name] {
		return nil
	}
	seen[name] = true
	out, err := runBounded(exec.Command("systemd-analyze", "syscall-filter", "--no-pager", name))
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v\n%s", name, err, out)
	}
	var calls []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l == name {
			continue
		}
		calls = append(calls, expandSyscalls(t, l, seen)...)
	}
	return calls
}

// TestDeployImageBuilds builds the image with docker where its daemon
// answers, and runs sluice in it.
func TestDeployImageBuilds(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: the image is not built (TestDeployFiles still reads the Dockerfile)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	cancel()
	if err != nil {
		t.Skipf("docker is installed but its daemon does not answer (%v): the image is not built (TestDeployFiles still reads the Dockerfile)\n%s", err, out)
	}
	docker := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		return string(out), err
	}
	tag := fmt.Sprintf("sluice-e2e:%d", time.Now().UnixNano())
	if out, err := docker(20*time.Minute, "build", "-f", "examples/deploy/Dockerfile", "-t", tag, ".."); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { docker(2*time.Minute, "image", "rm", "-f", tag) })
	if out, err := docker(2*time.Minute, "image", "inspect", "--format", "{{.Config.User}}", tag); err != nil || strings.TrimSpace(out) != "65532:65532" {
		t.Errorf("the image runs as %q (%v), want 65532:65532", strings.TrimSpace(out), err)
	}
	if out, err := docker(2*time.Minute, "run", "--rm", tag, "version"); err != nil || !strings.Contains(out, "sluice") {
		t.Errorf("docker run %s version: %v\n%s", tag, err, out)
	}
	if out, err := docker(2*time.Minute, "run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "true"); err == nil {
		t.Errorf("the image has a shell:\n%s", out)
	}
	// doctor in the container, under the default seccomp profile, says
	// which isolation layers are in force.
	doc, err := docker(2*time.Minute, "run", "--rm", "--security-opt", "no-new-privileges", tag, "doctor")
	t.Logf("sluice doctor in the container:\n%s", doc)
	if !strings.Contains(doc, "landlock") || !strings.Contains(doc, "network seal") {
		t.Errorf("docker run %s doctor: %v: no landlock or network seal line", tag, err)
	}
}
