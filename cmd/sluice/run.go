package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
	"github.com/sluicehq/sluice/schemas"
)

type inputFlags map[string]string

func (f inputFlags) String() string { return "" }
func (f inputFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("--input %q: want name=value", s)
	}
	if _, dup := f[k]; dup {
		return fmt.Errorf("--input %s given twice", k)
	}
	f[k] = v
	return nil
}

// maxInputFile bounds what one --input name=@FILE reads.
const maxInputFile = 8 << 20

// readInputs returns the inputs with each value name=@FILE replaced by the
// file's content, and name=@- by standard input's (read once: only one
// input may take it). A value that starts with @@ is the literal value
// without its first @. The content is taken less one final newline (as
// echo and editors end a line), and must be UTF-8 text of at most 8 MiB.
func (c *cli) readInputs(in inputFlags) (map[string]string, error) {
	out := make(map[string]string, len(in))
	stdinBy := ""
	for _, name := range sortedKeys(in) {
		v := in[name]
		switch {
		case strings.HasPrefix(v, "@@"):
			out[name] = v[1:]
			continue
		case !strings.HasPrefix(v, "@"):
			out[name] = v
			continue
		}
		file := v[1:]
		var r io.Reader
		switch file {
		case "":
			return nil, fmt.Errorf("--input %s=@: name a file after @ (or @- for standard input; @@ starts a value with @)", name)
		case "-":
			if stdinBy != "" {
				return nil, fmt.Errorf("--input %s=@-: standard input is already read by --input %s=@-", name, stdinBy)
			}
			stdinBy = name
			r = c.stdin
		default:
			f, err := os.Open(file)
			if err != nil {
				return nil, fmt.Errorf("--input %s=@%s: %w", name, file, err)
			}
			defer f.Close()
			r = f
		}
		b, err := io.ReadAll(io.LimitReader(r, maxInputFile+1))
		if err != nil {
			return nil, fmt.Errorf("--input %s=@%s: %w", name, file, err)
		}
		if len(b) > maxInputFile {
			return nil, fmt.Errorf("--input %s=@%s: more than %d MiB; an input read from a file is at most that", name, file, maxInputFile>>20)
		}
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("--input %s=@%s: not UTF-8 text", name, file)
		}
		s := string(b)
		if t, ok := strings.CutSuffix(s, "\n"); ok {
			s = strings.TrimSuffix(t, "\r")
		}
		out[name] = s
	}
	return out, nil
}

func runCommand() *command {
	return &command{
		name:  "run",
		usage: "run FLOW.yaml [--input name=value …] [--json] [--wait=false] [--config FILE] [--use-running]",
		short: "run a flow",
		long: `Runs a flow and prints what each step did, the label its arguments carried,
and the policy decision on it. With no orchestrator running, starts one for
the duration of the run: the embedded NATS server and every configured
worker, each as its own process.

An input's value is given on the command line (--input name=value), read
from a file (--input text=@invoice.txt: the file's content, less one final
newline; UTF-8 text, at most 8 MiB), or from standard input (--input
text=@-, for one input, read the same way). A value that starts with @ is written
with @@ (--input handle=@@alice is "@alice").

While it runs, each step's call that finishes is printed on standard
error with its status and how long it took (step offers (web.fetch):
completed in 1.2s), from the run's audit records; --json prints none.

A call that policy holds for approval waits for a person (sluice approve ID)
unless --wait=false, in which case the run stops there with exit code 4.
While it waits, it shows the call's arguments, how to answer it (and the
web page of sluice up, when the run was submitted to one), the time it
started waiting, and every 30 seconds how long it has waited.

Configuration comes from --config, else ./sluice.yaml (in the working
directory, not the flow's), else the built-in defaults (every built-in
worker, no network grant, state under ./.sluice). On the defaults, a
sluice.yaml beside the flow is named in a note: it is used only with
--config.

With an orchestrator running on the same state directory (sluice up), the
run is submitted to it, and decided by the configuration and policies it
runs. If those differ from the configuration this command would use (their
fingerprints differ: another --config, or files edited since sluice up
started or last reloaded), the run is refused, nothing of it started, and
both are named: apply the files with 'sluice reload', restart sluice up
with them, or run under the running configuration with --use-running.

Ctrl-C (SIGINT or SIGTERM) interrupts the run: the steps under way stop
and are reported as interrupted, not failed, and the run is kept as
interrupted. It is not resumed by itself: 'sluice up --resume' resumes it
from where it stopped (no completed call is made again), 'sluice cancel
RUN' ends it for good. A run submitted to a running orchestrator (sluice
up) is not stopped by Ctrl-C on this command: it goes on there, and this
command says so and stops waiting for it.

With several orchestrators on one bus, a run submitted to one that dies
goes on in another, which takes it over. This command notices within 10 s
that its orchestrator fell silent, says so on standard error, and asks
the others to follow the run: it ends with the run's result and exit code
as if nothing had happened. So it does when its orchestrator stops
(Ctrl-C on sluice up) and another takes the run over. Should none answer, it says so and exits 1:
sluice runs shows whether the run goes on, sluice trace RUN how it went.

With --json, the run's status is completed, denied, held, failed,
interrupted or cancelled (sluice cancel, from elsewhere), and so is each
step's (or skipped). Its shape is schemas/output/run.json (docs/json.md).

Exit codes: 0 completed, 3 a step was denied by policy, 4 a step is held for
approval (with --wait=false, or when --wait-timeout passed), 130
interrupted (Ctrl-C or SIGTERM), 1 any other failure (a run refused because
the running configuration differs is one: no policy decided anything), 2 a
usage error.

Examples:
  sluice run examples/travel/pay-direct.yaml --input payee=acct_hotel_1 --input amount=120
  sluice run examples/travel/book.yaml --config examples/travel/sluice.yaml --input destination=Lisbon --input budget=400 --wait=false
  sluice run examples/travel/pay-direct.yaml --input payee=acct_hotel_1 --input amount=120 --json | jq .steps
  echo acct_hotel_1 | sluice run examples/travel/pay-direct.yaml --input payee=@- --input amount=120`,
		flags: func(fs *flag.FlagSet) func(*cli, context.Context, []string) int {
			inputs := inputFlags{}
			fs.Var(inputs, "input", "a flow input as `name=value` (repeatable); name=@FILE reads the value from a file, name=@- from standard input, name=@@… is a value starting with @")
			asJSON := fs.Bool("json", false, "print the result as one JSON object")
			wait := fs.Bool("wait", true, "wait for a person to approve held calls")
			waitTimeout := fs.Duration("wait-timeout", 0, "give up waiting for approval after this `duration` (0: wait until interrupted)")
			cfgFile := fs.String("config", "", "configuration `file` (default ./sluice.yaml if present)")
			verbose := fs.Bool("v", false, "log what the orchestrator and workers do, on stderr")
			useRunning := fs.Bool("use-running", false, "with sluice up running, run under the configuration it runs even when it differs from --config or ./sluice.yaml")
			return func(c *cli, ctx context.Context, args []string) int {
				if len(args) != 1 {
					c.errorf("run: give exactly one flow file (got %d arguments)", len(args))
					return exitUsage
				}
				values, err := c.readInputs(inputs)
				if err != nil {
					c.errorf("run %s: %v", args[0], err)
					return exitUsage
				}
				return c.run(ctx, runOptions{flow: args[0], inputs: values, json: *asJSON, wait: *wait,
					waitTimeout: *waitTimeout, config: *cfgFile, verbose: *verbose, useRunning: *useRunning})
			}
		},
	}
}

type runOptions struct {
	flow        string
	inputs      map[string]string
	json        bool
	wait        bool
	waitTimeout time.Duration
	config      string
	verbose     bool
	useRunning  bool
	remote      bool // submitted to a running orchestrator
}

func (c *cli) loadConfig(explicit string) (*config.Config, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	path, err := config.Find(explicit, cwd)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return config.Default(cwd), nil
	}
	return config.Load(path)
}

// report prints an error; diagnostics get their source line and a caret.
func (c *cli) report(err error) {
	if ds, ok := err.(schemas.Diagnostics); ok && len(ds) == 0 {
		return
	}
	ds, ok := schemas.AsDiagnostics(err)
	if !ok {
		c.errorf("%v", err)
		return
	}
	sources := map[string][]byte{}
	for _, d := range ds {
		if _, seen := sources[d.File]; !seen && d.File != "" {
			if b, err := os.ReadFile(d.File); err == nil {
				sources[d.File] = b
			}
		}
	}
	fmt.Fprint(c.stderr, schemas.Render(ds, sources))
}

func (c *cli) run(ctx context.Context, o runOptions) int {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := c.logger(level, false)
	dep, err := c.loadConfig(o.config)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	progress := io.Discard
	if !o.json {
		progress = c.stderr
	}
	if dep.File == "" {
		// The defaults, while the flow has a configuration beside it: it
		// is not used unless named.
		if beside := filepath.Join(filepath.Dir(o.flow), config.FileName); filepath.Dir(o.flow) != "." {
			if _, err := os.Stat(beside); err == nil {
				fmt.Fprintf(c.stderr, "note: running on the built-in defaults (no ./%s); %s beside the flow is used only with --config %s\n",
					config.FileName, beside, beside)
			}
		}
	}
	// A running orchestrator (sluice up) owns the state directory: submit
	// the run to it.
	if client, err := api.Dial(dep.State); err == nil {
		defer client.Close()
		fingerprint := ""
		if !o.useRunning {
			// What this command would run under, to be compared with
			// what the orchestrator runs.
			eff, err := orchestrator.LoadEffective(dep)
			if err != nil {
				c.report(err)
				return exitFailure
			}
			fingerprint = eff.Fingerprint
		}
		o.remote = true
		return c.runRemote(ctx, client, o, progress, dep, fingerprint)
	}
	orch, err := orchestrator.New(orchestrator.Config{Deployment: dep, Log: log, Getenv: c.getenv})
	if err != nil {
		c.report(err)
		return exitFailure
	}
	plan, err := orch.LoadFlow(o.flow)
	if err != nil {
		c.report(err)
		return exitFailure
	}
	inputs, err := plan.BindInputs(o.inputs)
	if err != nil {
		c.errorf("run %s: %v", o.flow, err)
		return exitUsage
	}
	fmt.Fprintf(progress, "starting the bus and %d workers…\n", len(dep.Workers))
	slowStartNote(progress, orch, dep)
	start := time.Now()
	if err := orch.Start(ctx); err != nil {
		orch.Close()
		c.report(err)
		return exitFailure
	}
	defer orch.Close()
	fmt.Fprintf(progress, "ready in %s; running %s\n", time.Since(start).Round(time.Millisecond), plan.Name)
	p := newProgress(progress, "")
	defer p.close()
	var runID atomic.Value
	runID.Store("")
	opts := engine.Options{Wait: o.wait, WaitTimeout: o.waitTimeout, OnHeld: func(s engine.StepResult) {
		if o.wait {
			p.held(s)
		}
	}, OnStarted: func(id string) { runID.Store(id) }}
	if !o.json {
		if stop, err := orch.FollowSteps(func() string { return runID.Load().(string) }, p.step); err == nil {
			defer func() {
				wait := 10 * time.Second
				if runID.Load().(string) == "" {
					wait = 0
				}
				stop(wait)
			}()
		}
	}
	// Ctrl-C interrupts the run as a person's act (ErrStoppedByUser): it
	// is kept as interrupted, and resumed only when asked.
	runCtx, cancelRun := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelRun(nil)
	stopAfter := context.AfterFunc(ctx, func() { cancelRun(engine.ErrStoppedByUser) })
	defer stopAfter()
	res, err := orch.Run(runCtx, plan, inputs, opts)
	if res == nil {
		c.report(err)
		return exitFailure
	}
	stoppedByUser := errors.Is(err, engine.ErrStoppedByUser)
	if err != nil && !stoppedByUser {
		c.report(err)
	}
	p.close()
	return failedWith(err != nil && !stoppedByUser, c.finish(res, o))
}

// slowStartNote says, before a start that compiles WebAssembly tools
// with nothing compiled yet, why the start takes seconds.
func slowStartNote(w io.Writer, orch *orchestrator.Orchestrator, dep *config.Config) {
	var names []string
	for name, m := range orch.Manifests() {
		if strings.HasPrefix(m.Run, "wasm:") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	cache := filepath.Join(dep.State, "wasm-cache")
	if entries, err := os.ReadDir(cache); err == nil && len(entries) > 0 {
		return
	}
	slicesSort(names)
	fmt.Fprintf(w, "compiling the WebAssembly tools of %s for their first start: this takes a few seconds; the compiled code is kept in %s for the next starts\n",
		display.List(names), cache)
}

// failedWith is the exit code of a run printed with finish: a failure when
// an error came with its result (its records could not all be stored),
// whatever its steps did.
func failedWith(errored bool, code int) int {
	if errored {
		return exitFailure
	}
	return code
}

func heldNotice(w io.Writer, s engine.StepResult, webURL string) {
	why := s.Why
	if len(why) == 0 {
		why = s.Reasons
	}
	fmt.Fprintf(w, "step %s (%s) is held for approval: %s\n", show(s.ID), show(s.Tool), show(strings.Join(why, "; ")))
	for _, name := range sortedKeys(s.Args) {
		l := s.ArgLabels[name]
		fmt.Fprintf(w, "  %-10s = %s\n  %-10s   %s\n", show(name), showJSON(s.Args[name]), "", describe(l.Integrity().String(), l.Secrecy(), l.Sources()))
	}
	printLookalikes(w, s.Lookalikes, "  ")
	fmt.Fprintf(w, "  approve: sluice approve %s\n  deny:    sluice deny %s\n", show(s.ApprovalID), show(s.ApprovalID))
	if webURL != "" {
		fmt.Fprintf(w, "  or on the web page: %s\n", webURL)
	}
}

// progress prints, on stderr, each step as it finishes and how long a
// held call has waited for a person.
type progress struct {
	w      io.Writer
	webURL string // the web page of the orchestrator, when it has one

	mu      sync.Mutex
	waiting map[string]time.Time // held approvals, since when
	stop    chan struct{}        // closed by close
	ticking bool
}

// waitTick is how often a run waiting for a person says so again.
const waitTick = 30 * time.Second

func newProgress(w io.Writer, webURL string) *progress {
	return &progress{w: w, webURL: webURL, waiting: map[string]time.Time{}, stop: make(chan struct{})}
}

// step prints a step's call that finished: its status and how long it took.
func (p *progress) step(ev api.StepEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("step %s (%s): %s", show(ev.Step), show(ev.Tool), show(ev.Status))
	if ev.Status != engine.StatusDenied {
		line += " in " + (time.Duration(ev.DurationMS) * time.Millisecond).String()
	}
	if ev.Error != "" {
		line += ": " + show(ev.Error)
	}
	fmt.Fprintln(p.w, line)
	for id := range p.waiting {
		// An answered call goes on (or is denied): it no longer waits.
		if strings.HasPrefix(id, ev.Step+"\x00") {
			delete(p.waiting, id)
		}
	}
}

// held prints a call held for a person, with how to answer it, and from
// then on, every waitTick, how long it has waited.
func (p *progress) held(s engine.StepResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	heldNotice(p.w, s, p.webURL)
	fmt.Fprintf(p.w, "waiting for a person since %s (Ctrl-C stops waiting; the run is kept)\n", now.Format(time.TimeOnly))
	p.waiting[s.ID+"\x00"+s.ApprovalID] = now
	if p.ticking {
		return
	}
	p.ticking = true
	go func() {
		t := time.NewTicker(waitTick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			p.mu.Lock()
			for _, id := range sortedKeys(p.waiting) {
				step, approval, _ := strings.Cut(id, "\x00")
				fmt.Fprintf(p.w, "still waiting for a person: step %s, approval %s, held %s ago\n", show(step), show(approval),
					time.Since(p.waiting[id]).Round(time.Second))
			}
			p.mu.Unlock()
		}
	}()
}

// close stops the waiting lines; it may be called more than once.
func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
}

// runRemote submits the run to the orchestrator behind client.
func (c *cli) runRemote(ctx context.Context, client *api.Client, o runOptions, progress io.Writer, dep *config.Config, fingerprint string) int {
	abs, err := filepath.Abs(o.flow)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		c.errorf("run: %v", err)
		return exitFailure
	}
	fmt.Fprintf(progress, "submitting to the orchestrator running at %s (pid %d)\n", client.Endpoint.URL, client.Endpoint.PID)
	if o.useRunning {
		// Said on stderr even with --json: the run is not decided by the
		// configuration this command names.
		if running, err := client.Config(ctx); err == nil {
			fmt.Fprintf(c.stderr, "--use-running: running under the configuration of the orchestrator (pid %d): %s %s, not %s\n",
				running.PID, configName(running.File), running.Fingerprint, configName(dep.File))
		} else {
			fmt.Fprintf(c.stderr, "--use-running: running under the configuration of the orchestrator (pid %d), not %s\n",
				client.Endpoint.PID, configName(dep.File))
		}
	}
	webURL := ""
	if b, err := os.ReadFile(filepath.Join(dep.State, "run", "web.url")); err == nil {
		webURL = strings.TrimSpace(string(b))
	}
	p := newProgress(progress, webURL)
	defer p.close()
	var mu sync.Mutex
	var runID string
	client.OnFollow = func(id, why string) {
		fmt.Fprintf(c.stderr, "run %s: %s; following the run through the deployment's other orchestrators\n", id, why)
	}
	rep, err := client.Run(ctx, api.RunRequest{Flow: abs, Inputs: o.inputs, Wait: o.wait, WaitTimeoutMS: o.waitTimeout.Milliseconds(),
		Fingerprint: fingerprint},
		func(raw json.RawMessage) {
			var ev api.RunEvent
			if json.Unmarshal(raw, &ev) != nil {
				return
			}
			if ev.Started != "" {
				mu.Lock()
				runID = ev.Started
				mu.Unlock()
			}
			if ev.Held != nil && o.wait {
				p.held(*ev.Held)
			}
			if ev.Step != nil && !o.json {
				p.step(*ev.Step)
			}
		})
	if err != nil && ctx.Err() != nil {
		// Ctrl-C here stops the waiting, not the run: it goes on in the
		// orchestrator, which owns it.
		mu.Lock()
		id := runID
		mu.Unlock()
		if id == "" {
			c.errorf("run %s: interrupted before the orchestrator (pid %d) said whether it started the run: sluice runs shows it if it did, and sluice cancel RUN ends it",
				o.flow, client.Endpoint.PID)
			return exitInterrupted
		}
		fmt.Fprintf(c.stdout, "run %s (%s): interrupted here; it goes on in the orchestrator (pid %d)\n", show(id), show(o.flow), client.Endpoint.PID)
		fmt.Fprintf(c.stderr, "\nrun %s was not stopped: it belongs to the running orchestrator (sluice up). sluice runs shows how it ends; sluice cancel %s ends it now.\n", id, id)
		return exitInterrupted
	}
	if err != nil {
		c.errorf("run %s: %v", o.flow, err)
		return exitFailure
	}
	if r := rep.Running; r != nil {
		c.errorf("run %s refused: the orchestrator running on %s (pid %d) runs another configuration than this command would use\n"+
			"  running:   %s  %s\n"+
			"  this run:  %s  %s\n"+
			"nothing was run. Either apply the files to the running orchestrator with 'sluice reload' (it reloads %s),\n"+
			"restart sluice up with this configuration, or add --use-running to run under the running one.",
			o.flow, dep.State, r.PID, configName(r.File), r.Fingerprint, configName(dep.File), fingerprint, configName(r.File))
		return exitFailure
	}
	if len(rep.Diagnostics) > 0 {
		for i := range rep.Diagnostics {
			if rep.Diagnostics[i].File == abs {
				rep.Diagnostics[i].File = o.flow
			}
		}
		c.report(rep.Diagnostics)
		return exitFailure
	}
	if rep.Usage {
		c.errorf("run %s: %s", o.flow, rep.Error)
		return exitUsage
	}
	if rep.Result == nil {
		c.errorf("run %s: %s", o.flow, rep.Error)
		return exitFailure
	}
	var res engine.Result
	if err := json.Unmarshal(rep.Result, &res); err != nil {
		c.errorf("run %s: malformed result from the orchestrator", o.flow)
		return exitFailure
	}
	if rep.Error != "" && res.Status != engine.StatusInterrupted {
		c.errorf("run %s: %s", o.flow, rep.Error)
	}
	return failedWith(rep.Error != "", c.finish(&res, o))
}

// configName names a configuration file for people: the built-in
// defaults when there is none.
func configName(file string) string {
	if file == "" {
		return "(built-in defaults)"
	}
	return file
}

// finish prints the result and maps it to an exit code.
func (c *cli) finish(res *engine.Result, o runOptions) int {
	if o.json {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(c.stdout, string(b))
	} else {
		printResult(c.stdout, res)
	}
	if res.Status == engine.StatusInterrupted {
		var at []string
		for _, s := range res.Steps {
			if s.Status == engine.StatusInterrupted {
				at = append(at, s.ID)
			}
		}
		where := ""
		if len(at) > 0 {
			where = " at step " + display.List(at)
		}
		if o.remote {
			fmt.Fprintf(c.stderr, "\nrun %s was interrupted%s: its orchestrator stopped. It resumes when sluice up starts again; sluice cancel %s ends it for good.\n",
				res.RunID, where, res.RunID)
		} else {
			fmt.Fprintf(c.stderr, "\nrun %s was interrupted%s and is kept: it is not resumed by itself.\n"+
				"sluice up --resume resumes it where it stopped; sluice cancel %s ends it for good.\n", res.RunID, where, res.RunID)
		}
		return exitInterrupted
	}
	if res.Status == engine.StatusCancelled {
		fmt.Fprintf(c.stderr, "\nrun %s was cancelled: it ends here, and is never resumed.\n", res.RunID)
		return exitFailure
	}
	if res.Status == engine.StatusHeld && !o.json {
		// The run is kept: it goes on when someone answers.
		fmt.Fprintf(c.stderr, "\nrun %s is kept, held: sluice approvals lists what waits; sluice approve ID or sluice deny ID answers it\n"+
			"through a running orchestrator (sluice up), which then finishes the run.\n", res.RunID)
	}
	switch res.Status {
	case engine.StatusCompleted:
		return exitOK
	case engine.StatusDenied:
		return exitDenied
	case engine.StatusHeld:
		return exitHeld
	}
	return exitFailure
}

// printResult says in plain words what each step did, the label it got,
// and why a call was held or denied.
func printResult(w io.Writer, r *engine.Result) {
	fmt.Fprintf(w, "run %s (%s): %s\n", show(r.RunID), show(r.Flow), show(r.Status))
	for _, s := range r.Steps {
		fmt.Fprintf(w, "\n  step %s — %s: %s\n", show(s.ID), show(s.Tool), show(s.Status))
		if s.Status == engine.StatusSkipped {
			fmt.Fprintf(w, "    not run: %s\n", show(s.Error))
			continue
		}
		if s.Status == engine.StatusInterrupted && s.Decision == "" {
			fmt.Fprintf(w, "    not finished: the run was interrupted before this step was decided\n")
			continue
		}
		fmt.Fprintf(w, "    arguments labeled %s\n", describe(s.Label.Integrity().String(), s.Label.Secrecy(), s.Label.Sources()))
		for _, name := range sortedKeys(s.ArgLabels) {
			l := s.ArgLabels[name]
			if v, ok := s.Args[name]; ok {
				// A held call: show the person exactly what would be sent.
				fmt.Fprintf(w, "      %-12s = %s\n      %-12s   %s\n", show(name), showJSON(v), "", describe(l.Integrity().String(), l.Secrecy(), l.Sources()))
			} else if len(l.Sources()) > 0 {
				fmt.Fprintf(w, "      %-12s from %s\n", show(name), display.List(l.Sources()))
			}
		}
		printLookalikes(w, s.Lookalikes, "      ")
		if s.Decision != "" {
			rules := "no rule matched; the clearance check passed"
			if len(s.Rules) > 0 {
				rules = "rules: " + display.List(s.Rules)
			}
			fmt.Fprintf(w, "    policy: %s (%s)\n", show(s.Decision), rules)
			for _, why := range s.Reasons {
				fmt.Fprintf(w, "      why: %s\n", show(why))
			}
		}
		if s.OutputLabel != nil {
			fmt.Fprintf(w, "    output labeled %s\n", describe(s.OutputLabel.Integrity().String(), s.OutputLabel.Secrecy(), s.OutputLabel.Sources()))
		}
		if s.Status == engine.StatusHeld {
			fmt.Fprintf(w, "    held for approval %s: nothing was sent to %s\n", show(s.ApprovalID), show(s.Tool))
		}
		for i, it := range s.Items {
			line := fmt.Sprintf("      [%d] %s", i, show(it.Status))
			if it.Decision != "" {
				line += fmt.Sprintf(" (%s", show(it.Decision))
				if len(it.Rules) > 0 {
					line += ": " + display.List(it.Rules)
				}
				line += ")"
			}
			if it.ApprovalID != "" && it.Status == engine.StatusHeld {
				line += "; approval " + show(it.ApprovalID)
			}
			if it.Error != "" {
				line += ": " + show(it.Error)
			}
			fmt.Fprintln(w, line)
			printLookalikes(w, it.Lookalikes, "        ")
		}
		printModelStep(w, s)
		if s.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", show(s.Error))
		}
	}
	if len(r.Outputs) > 0 {
		fmt.Fprintf(w, "\noutputs: %s\n", showJSON(r.Outputs))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "\nerror: %s\n", show(r.Error))
	}
}

// printModelStep prints what the model of an agent step did, or the
// program a plan step's planner wrote, and the calls either made.
func printModelStep(w io.Writer, s engine.StepResult) {
	switch {
	case s.Program != "":
		fmt.Fprintf(w, "    plan: %d program(s) written, %d call(s); the program:\n", s.Turns, len(s.Calls))
		for _, line := range strings.Split(strings.TrimRight(s.Program, "\n"), "\n") {
			fmt.Fprintf(w, "      | %s\n", show(line))
		}
	case s.Turns > 0:
		fmt.Fprintf(w, "    agent: %d turn(s), %d tool call(s)\n", s.Turns, len(s.Calls))
	default:
		return
	}
	for _, c := range s.Calls {
		fmt.Fprintf(w, "      %s: %s (%s), arguments labeled %s\n", show(c.Tool), show(c.Status), show(c.Decision),
			describe(c.Label.Integrity().String(), c.Label.Secrecy(), c.Label.Sources()))
	}
}

// show is display.String: every string printed that an attacker may have
// influenced (a tool name a model chose, an error a worker wrote, a
// source, a reason that quotes a value) goes through it, so that no
// control, escape sequence, bidi control or invisible character reaches
// the terminal as itself.
func show(s string) string { return display.String(s) }

// showJSON prints a value exactly as JSON, with every hidden character
// escaped.
func showJSON(v any) string {
	s, err := display.JSON(v, "")
	if err != nil {
		return fmt.Sprintf("(not JSON: %T)", v)
	}
	return s
}

// printLookalikes flags each argument of a held call that looks like, but
// is not, a registry entry or a value approved before.
func printLookalikes(w io.Writer, ls []engine.Lookalike, indent string) {
	for _, l := range ls {
		fmt.Fprintf(w, "%s⚠ %s looks like %s (%s) but is not: %s\n", indent, show(l.Arg), show(l.Like), show(l.Where), display.QuoteASCII(l.Value))
	}
}

func describe(integrity string, secrecy, sources []string) string {
	s := show(integrity)
	if len(secrecy) > 0 {
		s += ", secret (" + display.List(secrecy) + ")"
	}
	if len(sources) > 0 {
		s += ", from " + display.List(sources)
	} else {
		s += ", written in the flow"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slicesSort(out)
	return out
}
