package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docCommand says how the test runs one documented command, or why not.
type docCommand struct {
	// skip, when set, is why the command is not run.
	skip string
	// copy are repository folders copied into the fresh directory, at the
	// same place ("examples/travel").
	copy []string
	// files are more files written there.
	files map[string]string
	// site starts the travel example's airline site on a free port: the
	// copied YAML files and the command name it instead of 127.0.0.1:8088.
	site bool
	// pre are commands run first, each of which must succeed.
	pre []string
	// up runs 'sluice up' with these arguments while the command runs.
	up []string
	// server makes the command a sluice up: it must say it is up, and then
	// exit 0 on SIGINT.
	server bool
	// code is the exit code wanted.
	code int
}

const payDirect = "sluice run examples/travel/pay-direct.yaml --input payee=acct_hotel_1 --input amount=120"

const deployConfig = "workers:\n  - manifest: builtin:payment\n  - manifest: builtin:calendar\n    config: {file: cal.ics, owner: me@home.example}\n"

var travel = []string{"examples/travel"}

// docCommands holds every command of the README, of docs/*.md (the lines
// of their sh blocks; with "$ " prompts, only those) and of the examples
// in 'sluice help COMMAND'. A command documented but not here fails the
// test, and so does one here but no longer documented.
var docCommands = map[string]docCommand{
	// README.md
	"make demo": {skip: "builds bin/ in the checkout and binds 127.0.0.1:8088; TestDemo runs its script in a copy, on a free port"},
	"make test": {skip: "the whole suite, this test included"},
	"make eval": {skip: "every suite in full (about four minutes); TestEvaluationSample runs a fixed sample of it"},
	"go run ./e2e/eval -suite banking -task user_task_0 -v": {skip: "one task of the evaluation; TestEvaluationSample runs the harness"},
	"go run ./e2e/eval -mode plan":                          {skip: "the plan version of every task in full; TestEvaluationSample runs all three versions on a sample"},
	"go run ./e2e/eval -undefended":                         {skip: "the undefended control in full; TestEvaluationUndefendedControl runs it on a sample"},
	"go run ./e2e/eval -person remember":                    {skip: "the evaluation in full with a person who remembers answers (about six minutes); TestEvaluationSample runs the harness"},
	"key=$(sed 's/.*key=//' .sluice/run/web.url)":           {skip: "reads a running sluice up's page address; TestMetricsOnTheWebServer scrapes /metrics with the key"},
	"curl -s -H \"Authorization: Bearer $key\" \"$(sed 's/\\/?key=.*//' .sluice/run/web.url)/metrics\"": {skip: "needs a running sluice up and curl; TestMetricsOnTheWebServer scrapes /metrics"},
	"sluice mcp --tools web.fetch,payment.charge --inspect llm":                                         {skip: "serves MCP on stdin until its client leaves; TestMCPFrontDoor* run it with an SDK client"},
	"sluice mcp --tools files.read,email.send --http 127.0.0.1:8931":                                    {skip: "binds a fixed port; TestMCPFrontDoorHTTP serves HTTP on a free one"},
	"sluice approve --step 01JD6Z2A8C1M0QWN5V7X9B3D4F/pay":                                              {skip: "an example run id; TestApproveStepAnswersEveryElement answers a real step"},
	"sluice deny --step 01JD6Z2A8C1M0QWN5V7X9B3D4F/pay":                                                 {skip: "an example run id"},
	"claude mcp add sluice -- sluice mcp --config /path/sluice.yaml --tools web.fetch,payment.charge":   {skip: "needs Claude Code"},

	"sluice mcp --tools web.fetch --flows examples/travel/pay-direct.yaml --http 127.0.0.1:8931 --stateless": {skip: "binds a fixed port; TestMCPFrontDoorStatelessKeepsTheLabel and TestMCPFrontDoorFlows serve both on a free one"},

	// docs/flows.md, docs/approvals.md
	"sluice run examples/travel/book.yaml --config examples/travel/sluice.yaml --input destination=Lisbon --input budget=400 --wait=false": {copy: travel, site: true, code: 4},
	"sluice approvals --config examples/travel/sluice.yaml": {copy: travel, site: true,
		pre: []string{"sluice run examples/travel/book.yaml --config examples/travel/sluice.yaml --input destination=Lisbon --input budget=400 --wait=false || test $? = 4"}},
	"sluice doctor | grep 'audit signing key'":                                                          {},
	"sluice audit verify audit.jsonl --public-key ed25519:KLsBYktexfjGCXcn/up31HwivqNefbnq4gm9uNOfiIo=": {skip: "the key is an example; TestAuditExportVerify verifies with a real one"},
	"nats stream add SLUICE_AUDIT_COPY --config audit-copy.json":                                        {skip: "needs the nats tool and a second cluster"},
	"n=$(nats stream info SLUICE_AUDIT_COPY --json | jq .state.messages)":                               {skip: "needs the nats tool and a second cluster"},
	"nats sub sluice.audit --stream SLUICE_AUDIT_COPY --all --raw --count \"$n\" > copy.jsonl":          {skip: "needs the nats tool and a second cluster"},
	"sluice audit verify copy.jsonl --public-key ed25519:KLsBYktexfjGCXcn/up31HwivqNefbnq4gm9uNOfiIo=":  {skip: "the key is an example; TestAuditRetention verifies a log that starts at a checkpoint"},

	// docs/policies.md

	// docs/mcp.md, docs/operations.md, docs/workers.md
	"make e2e-model-server": {skip: "builds Ollama from source (C++, many minutes) and serves a model through it; opt-in, not in make test"},

	"sluice worker discover --manifest files-mcp.yaml": {skip: "needs the npm MCP server (make mcp-servers); TestMCPDiscover runs it"},
	"nsc add account --name sluice":                    {skip: "needs nsc and a NATS operator"},
	"nsc edit account --name sluice --sk generate --js-mem-storage -1 --js-disk-storage -1 --js-streams -1 --js-consumer -1":                                                                      {skip: "needs nsc and a NATS operator"},
	"nsc add user --account sluice --name sluice-orchestrator":                                                                                                                                    {skip: "needs nsc and a NATS operator"},
	"nsc generate creds --account sluice --name sluice-orchestrator > /etc/sluice/orchestrator.creds":                                                                                             {skip: "needs nsc and a NATS operator"},
	"nsc add user --account sluice --name payment-b --expiry 1d --allow-sub 'sluice.tool.payment.>' --allow-sub '_INBOX.sluice.payment.>' --deny-pub '>' --allow-pub-response --response-ttl 15s": {skip: "needs nsc and a NATS operator"},
	"nsc generate creds --account sluice --name payment-b > payment.creds":                                                                                                                        {skip: "needs nsc and a NATS operator"},
	"chmod 600 /etc/sluice/orchestrator.creds":                                                                                                                                                    {skip: "needs nsc and a NATS operator"},
	"nsc push --account sluice": {skip: "needs nsc and a NATS operator"},

	// docs/operations.md, Deploying
	"docker build -f examples/deploy/Dockerfile --build-arg VERSION=$(git describe --tags --always --dirty) -t sluice .": {skip: "needs a Docker daemon; TestDeployImageBuilds builds the image where one answers"},
	"docker run -d --name sluice --network host --security-opt no-new-privileges -v sluice-state:/var/lib/sluice sluice": {skip: "needs a Docker daemon and binds 127.0.0.1:8080 on the host"},
	"docker exec sluice sluice doctor":                                                 {skip: "needs the container running; TestDeployImageBuilds runs doctor in the image"},
	"nsc generate config --mem-resolver --sys-account SYS --config-file resolver.conf": {skip: "needs nsc and a NATS operator; TestDeployFiles checks nats.conf with a resolver.conf of that form"},
	"chmod 600 secrets/account.nk secrets/orchestrator.creds":                          {skip: "needs the account's files made with nsc"},
	"sudo chown 65532:65532 secrets/account.nk secrets/orchestrator.creds":             {skip: "needs root"},
	"docker compose up -d":                        {skip: "needs a Docker daemon with compose; TestDeployFiles checks compose.yaml and the files it mounts"},
	"docker compose exec sluice sluice approvals": {skip: "needs the compose deployment running"},
	"sudo useradd --system --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice":      {skip: "needs root; adds a user to the machine"},
	"sudo install -m 0755 bin/sluice /usr/local/bin/sluice":                                  {skip: "needs root; installs into the machine"},
	"sudo install -D -m 0644 examples/deploy/sluice.yaml /etc/sluice/sluice.yaml":            {skip: "needs root; TestDeployFiles lints that configuration"},
	"sudo install -m 0644 examples/deploy/sluice.service /etc/systemd/system/sluice.service": {skip: "needs root; TestDeploySystemdUnit verifies the unit"},
	"sudo systemctl daemon-reload":                                                           {skip: "needs root and systemd running the machine"},
	"sudo systemctl enable --now sluice":                                                     {skip: "needs root and systemd running the machine"},
	"sudo systemctl reload sluice":                                                           {skip: "needs the unit running; TestReload* reload through SIGHUP"},
	"sudo journalctl -u sluice":                                                              {skip: "needs the unit running"},
	"sluice up --config /etc/sluice/sluice.yaml":                                             {skip: "needs the installed configuration and a NATS cluster; TestSeveralOrchestratorsTakeOverARun runs three"},
	"sudo -u sluice sluice doctor --config /etc/sluice/sluice.yaml":                          {skip: "needs the user sluice and the installed configuration"},
	"SLUICE_NATS_URL=nats://nats-2.internal:4222,nats://nats-3.internal:4222,nats://nats-1.internal:4222 SLUICE_NATS_CREDS=/run/sluice/payment.creds SLUICE_STATE=/var/lib/sluice sluice worker --manifest builtin:payment": {
		skip: "needs a NATS cluster and a worker's credentials"},
	"GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o money.wasm .": {skip: "builds in a tool's folder; make tools and the WASM tests build every example tool"},

	// sluice help up
	"sluice up":                       {server: true},
	"sluice up --http 127.0.0.1:8080": {skip: "binds a fixed port"},
	"sluice up --resume":              {server: true},
	"sluice up --config deploy/sluice.yaml --http=off": {files: map[string]string{"deploy/sluice.yaml": deployConfig, "deploy/cal.ics": ""}, server: true},
	// sluice help run
	payDirect:                         {copy: travel},
	payDirect + " --json | jq .steps": {copy: travel},
	"echo acct_hotel_1 | sluice run examples/travel/pay-direct.yaml --input payee=@- --input amount=120": {copy: travel},
	// sluice help lint
	"sluice lint --config examples/travel/sluice.yaml examples/travel/book.yaml": {copy: travel},
	"sluice lint --config deploy/sluice.yaml flows/*.yaml --json": {files: map[string]string{"deploy/sluice.yaml": deployConfig, "deploy/cal.ics": "",
		"flows/a.yaml": payDirectFlow, "flows/b.yaml": payDirectFlow}},
	// sluice help policy
	"sluice policy test examples/travel/policy.yaml examples/travel/policy_test.yaml": {copy: travel},
	"sluice policy test --config deploy/sluice.yaml tests/*.yaml": {files: map[string]string{"deploy/sluice.yaml": deployConfig, "deploy/cal.ics": "",
		"tests/pay.yaml": "cases:\n  - name: a trusted payment is allowed\n    tool: {name: payment.charge, worker: payment, privileged: true, clearance: {integrity: trusted}}\n    label: {integrity: trusted, sources: [user]}\n    args: {amount: 1, currency: EUR, payee: acct_x}\n    want: {action: allow}\n"}},
	// sluice help doctor
	"sluice doctor --config deploy/sluice.yaml": {files: map[string]string{"deploy/sluice.yaml": deployConfig, "deploy/cal.ics": ""}},
	// sluice help audit
	"sluice audit export --out audit.jsonl":                       {copy: travel, pre: []string{payDirect}},
	"sluice audit verify audit.jsonl":                             {copy: travel, pre: []string{payDirect, "sluice audit export --out audit.jsonl"}},
	"sluice audit verify audit.jsonl --public-key ed25519:q83v…=": {skip: "an example key"},
	// sluice help runs
	"sluice runs": {copy: travel, pre: []string{payDirect}},
	"sluice runs --json | jq '.[] | select(.status == \"interrupted\")'": {copy: travel, pre: []string{payDirect}},
	// sluice help reload
	"sluice reload": {up: []string{}},
	"sluice reload --config deploy/sluice.yaml": {files: map[string]string{"deploy/sluice.yaml": deployConfig, "deploy/cal.ics": ""},
		up: []string{"--config", "deploy/sluice.yaml"}},
	"kill -HUP <pid of sluice up>": {skip: "a placeholder for a process id"},
	// sluice help trace, approvals, approve, deny, cancel
	"sluice trace 01JD6Z4W8X2F3K5N7Q9R1T3V5X":                             {skip: "an example run id"},
	"sluice trace 01JD6Z4W8X2F3K5N7Q9R1T3V5X --dot | dot -Tsvg > run.svg": {skip: "an example run id"},
	"sluice approvals": {},
	"sluice approvals --json | jq '.[] | {id, tool, args}'":                                                  {},
	"sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X":                                                              {skip: "an example approval id"},
	"sluice deny 01JD6Z4W8X2F3K5N7Q9R1T3V5X":                                                                 {skip: "an example approval id"},
	"sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X --remember payee --sum-per-day amount=300 --until 2027-03-31": {skip: "an example approval id; TestRememberedAnswerThroughTheCLI runs approve --remember"},
	"sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X --endorse payee":                                              {skip: "an example approval id; TestEndorseAValueThroughTheCLI runs approve --endorse"},
	"sluice approve 01JD6Z4W8X2F3K5N7Q9R1T3V5X --endorse payee --for pay.send,pay.refund":                    {skip: "an example approval id; TestEndorseAValueThroughTheCLI runs approve --endorse"},
	"sluice registry": {skip: "needs a running orchestrator; TestRememberedAnswerThroughTheCLI runs it"},
	"sluice registry revoke 01JD6Z4W8X2F3K5N7Q9R1T3V5X": {skip: "an example id; TestRememberedAnswerThroughTheCLI revokes one"},
	"sluice cancel 01JD6Z4W8X2F3K5N7Q9R1T3V5X":          {skip: "an example run id"},
	"sluice cancel --interrupted":                       {copy: travel, pre: []string{payDirect}},
	// sluice help worker
	"sluice worker --manifest builtin:payment":               {skip: "a worker process is started by the orchestrator, with the credentials it gives it"},
	"sluice worker --manifest tools/weather.yaml":            {skip: "a worker process is started by the orchestrator, with the credentials it gives it"},
	"sluice worker discover --manifest tools/files-mcp.yaml": {skip: "needs the npm MCP server (make mcp-servers); TestMCPDiscover runs it"},
	// sluice help version, completion
	"sluice version":         {},
	"sluice completion bash": {},
	"sluice completion fish": {},
}

var shBlock = regexp.MustCompile("(?s)```sh\n(.*?)```")

// documentedCommands returns each command of the README's and docs/'s sh
// blocks and of the help examples, with where it is written.
func documentedCommands(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	files, _ := filepath.Glob("../docs/*.md")
	for _, f := range append(files, "../README.md") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range shBlock.FindAllStringSubmatch(string(b), -1) {
			lines := strings.Split(strings.ReplaceAll(m[1], "\\\n", ""), "\n")
			prompted := slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "$ ") })
			for _, l := range lines {
				switch {
				case prompted && strings.HasPrefix(l, "$ "):
					l = strings.TrimPrefix(l, "$ ")
				case prompted, strings.TrimSpace(l) == "", strings.HasPrefix(l, "#"):
					continue
				}
				l, _, _ = strings.Cut(l, " # ") // a comment
				found[strings.Join(strings.Fields(l), " ")] = strings.TrimPrefix(f, "../")
			}
		}
	}
	out, err := exec.Command(sluiceBin, "help").Output()
	if err != nil {
		t.Fatalf("sluice help: %v", err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); strings.HasPrefix(l, "  ") && len(f) > 1 {
			names = append(names, f[0])
		}
	}
	if len(names) < 10 {
		t.Fatalf("sluice help lists %d commands:\n%s", len(names), out)
	}
	for _, name := range names {
		out, err := exec.Command(sluiceBin, "help", name).Output()
		if err != nil {
			t.Fatalf("sluice help %s: %v", name, err)
		}
		in := false
		for _, l := range strings.Split(string(out), "\n") {
			switch {
			case l == "Example:" || l == "Examples:":
				in = true
			case in && strings.HasPrefix(l, "  "):
				found[strings.Join(strings.Fields(l), " ")] = "sluice help " + name
			default:
				in = false
			}
		}
	}
	return found
}

// Every command the README, docs/ and the help examples show runs as
// written, in a fresh directory with the files it needs, and exits as
// documented; a command that needs what a test cannot have (a fixed port,
// an example id, another machine) is listed in docCommands with why.
func TestDocumentedCommandsRun(t *testing.T) {
	found := documentedCommands(t)
	for cmd, where := range found {
		if _, ok := docCommands[cmd]; !ok {
			t.Errorf("%s: %q is not in docCommands: say how to run it, or why it is not run", where, cmd)
		}
	}
	for cmd := range docCommands {
		if _, ok := found[cmd]; !ok {
			t.Errorf("docCommands has %q, which is no longer documented", cmd)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	path := filepath.Dir(sluiceBin) + string(os.PathListSeparator) + os.Getenv("PATH")
	cmds := make([]string, 0, len(docCommands))
	for c := range docCommands {
		cmds = append(cmds, c)
	}
	slices.Sort(cmds)
	var skipped []string
	for _, c := range cmds {
		dc := docCommands[c]
		if dc.skip != "" {
			skipped = append(skipped, c+": "+dc.skip)
			continue
		}
		t.Run(strings.ReplaceAll(c, "/", "_"), func(t *testing.T) {
			for _, tool := range []string{"jq", "dot"} {
				if strings.Contains(c, "| "+tool) {
					if _, err := exec.LookPath(tool); err != nil {
						t.Skipf("%s is not installed", tool)
					}
				}
			}
			runDocCommand(t, c, dc, found[c], path)
		})
	}
	t.Logf("not run:\n  %s", strings.Join(skipped, "\n  "))
}

func runDocCommand(t *testing.T, c string, dc docCommand, where, path string) {
	dir := t.TempDir()
	replace := map[string]string{}
	if dc.site {
		replace["127.0.0.1:8088"] = startTravelSite(t)
	}
	for _, src := range dc.copy {
		copyTree(t, filepath.Join("..", src), filepath.Join(dir, src), replace)
	}
	for name, content := range dc.files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh := func(line string) *exec.Cmd {
		for old, repl := range replace {
			line = strings.ReplaceAll(line, old, repl)
		}
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+path)
		return cmd
	}
	for _, p := range dc.pre {
		if out, err := runBounded(sh(p)); err != nil {
			t.Fatalf("before %q: %q: %v\n%s", c, p, err, out)
		}
	}
	if dc.up != nil {
		up := sh("exec sluice up -q --http=off " + strings.Join(dc.up, " "))
		stopUp := startServer(t, up)
		defer stopUp()
	}
	if dc.server {
		cmd := sh("exec " + c)
		stop := startServer(t, cmd)
		if code := stop(); code != 0 {
			t.Fatalf("%s: %q exited %d on SIGINT, want 0", where, c, code)
		}
		return
	}
	out, err := runBounded(sh(c))
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != dc.code {
		t.Fatalf("%s: %q exited %d, want %d\n%s", where, c, code, dc.code, out)
	}
}

// runBounded runs cmd for at most two minutes and returns what it printed.
func runBounded(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		return out.Bytes(), context.DeadlineExceeded
	}
}

// startServer starts cmd, a sluice up, waits until it says it is up, and
// returns a function that interrupts it and returns its exit code.
func startServer(t *testing.T, cmd *exec.Cmd) func() int {
	t.Helper()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if strings.Contains(out.String(), "sluice is up in ") {
			break
		}
		select {
		case <-done:
			t.Fatalf("%s exited before it was up:\n%s", cmd, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not up within 2 minutes:\n%s", cmd, out.String())
		}
	}
	return func() int {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s did not stop within 2 minutes of SIGINT:\n%s", cmd, out.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Logf("%s:\n%s", cmd, out.String())
			return code
		}
		return 0
	}
}

// copyTree copies the files of src to dst, with replace applied to YAML
// files; state directories, sources of Go and shell, and node_modules
// are left out.
func copyTree(t *testing.T, src, dst string, replace map[string]string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".sluice" || d.Name() == ".demo" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".yaml") {
			s := string(b)
			for old, repl := range replace {
				s = strings.ReplaceAll(s, old, repl)
			}
			b = []byte(s)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
