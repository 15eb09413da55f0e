package interp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
)

// runKey finds a run's state from a builtin: thread.Local(runKey).
const runKey = "sluice.plan.run"

// run is the state of one run of a program.
type run struct {
	ctx  context.Context
	host Host
	// pc is the program counter label; it only rises.
	pc ifc.Label
	// read joins every label the program has read: the label of an error
	// whose operands are not known.
	read    ifc.Label
	pcHas   seen
	readHas seen
	n       int
	mem     int64
	lim     Limits
	thread  *starlark.Thread
	clock   clock
}

func runOf(t *starlark.Thread) *run { return t.Local(runKey).(*run) }

// raise joins l into the program counter label.
func (r *run) raise(l ifc.Label) {
	if !r.pcHas.has(l) {
		r.pc = join(r.pc, l)
		r.pcHas.add(l)
	}
}

// readLabel joins l into the label of what the program has read.
func (r *run) readLabel(l ifc.Label) {
	if !r.readHas.has(l) {
		r.read = join(r.read, l)
		r.readHas.add(l)
	}
}

// seen are labels already joined into a label that only rises: joining
// them again changes nothing, and is skipped.
type seen struct{ ls []ifc.Label }

func (s *seen) has(l ifc.Label) bool {
	if isBottom(l) {
		return true
	}
	for _, x := range s.ls {
		if x.Equal(l) {
			return true
		}
	}
	return false
}

func (s *seen) add(l ifc.Label) {
	if len(s.ls) < 16 {
		s.ls = append(s.ls, l)
	}
}

// planError is an error whose label the helpers know: the program counter
// label joined with the labels of the operands that failed.
type planError struct {
	msg string
	l   ifc.Label
}

func (e *planError) Error() string { return e.msg }

// errStopped ends a program whose call is held or whose run was interrupted.
var errStopped = errors.New("the plan stopped: a call is held")

// fail makes an error labelled with l and the program counter label.
func (r *run) fail(l ifc.Label, format string, args ...any) error {
	return &planError{msg: fmt.Sprintf(format, args...), l: join(l, r.pc)}
}

// failErr labels an error from an operation on operands labelled l. An
// error already labelled keeps its label, with l joined.
func (r *run) failErr(err error, l ifc.Label) error {
	var pe *planError
	if errors.As(err, &pe) {
		pe.l = join(pe.l, l, r.pc)
		return err
	}
	if errors.Is(err, errStopped) {
		return err
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		// Raised inside a function the operation called: its operands
		// are not known here.
		return &planError{msg: ee.Msg, l: join(l, r.pc, r.read)}
	}
	return &planError{msg: err.Error(), l: join(l, r.pc)}
}

// charge counts n more bytes made by the program, failing past the
// memory limit. It is called before a value is made whenever its size can
// be told in advance.
func (r *run) charge(n int64, l ifc.Label) error {
	if n < 0 || r.mem+n > r.lim.Memory || r.mem+n < r.mem {
		// How much the program made before may depend on anything it
		// read: the error is labelled with all of it.
		return r.fail(join(l, r.read), "memory limit exceeded: the program would hold more than %d bytes", r.lim.Memory)
	}
	r.mem += n
	return nil
}

// tick fails once the time limit is spent. The timer that cancels the
// thread covers code that calls no helper; tick makes the check at every
// helper, so a spent limit is seen at once.
func (r *run) tick() error {
	if r.clock.spent() > r.lim.Time {
		return r.fail(r.read, "time limit of %s exceeded", r.lim.Time)
	}
	return nil
}

// clock measures the time spent interpreting; it is paused while the host
// handles a call.
type clock struct {
	before  time.Duration
	started time.Time
	timer   *time.Timer
	cancel  func()
	limit   time.Duration
}

func (c *clock) start() {
	c.started = time.Now()
	c.timer = time.AfterFunc(c.limit-c.before, c.cancel)
}

func (c *clock) pause() {
	c.timer.Stop()
	c.before += time.Since(c.started)
}

func (c *clock) spent() time.Duration { return c.before + time.Since(c.started) }

func (l Limits) withDefaults() Limits {
	if l.Steps == 0 {
		l.Steps = DefaultSteps
	}
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	}
	if l.Time == 0 {
		l.Time = DefaultTime
	}
	return l
}

func (p *Program) run(ctx context.Context, h Host, inputs map[string]Input, lim Limits) (res Result) {
	lim = lim.withDefaults()
	th := &starlark.Thread{Name: "plan"}
	r := &run{ctx: ctx, host: h, pc: bottom(), read: bottom(), lim: lim, thread: th}
	th.SetLocal(runKey, r)
	th.SetMaxExecutionSteps(lim.Steps)
	defer func() {
		if v := recover(); v != nil {
			res = r.result(Failed)
			res.Error = fmt.Sprintf("%s: internal error in the plan interpreter: %v", p.file, v)
			res.ErrorLabel = join(r.pc, r.read)
		}
	}()
	in, err := r.inputs(inputs)
	if err != nil {
		res = r.result(Failed)
		res.Error = fmt.Sprintf("%s: inputs: %v", p.file, err)
		res.ErrorLabel = join(r.pc, r.read)
		return res
	}
	pre := make(starlark.StringDict, len(p.predeclared)+1)
	for k, v := range p.predeclared {
		pre[k] = v
	}
	pre["inputs"] = in
	r.clock = clock{limit: lim.Time, cancel: func() { th.Cancel(fmt.Sprintf("time limit of %s exceeded", lim.Time)) }}
	r.clock.start()
	stop := context.AfterFunc(ctx, func() { th.Cancel("the run was interrupted") })
	globals, err := p.prog.Init(th, pre)
	stop()
	r.clock.pause()
	if err != nil {
		return p.errorResult(r, err)
	}
	return r.output(p.file, globals["result"])
}

func (r *run) result(status string) Result {
	return Result{Status: status, PC: r.pc, Calls: r.n}
}

// inputs is the record of the inputs: one dict whose keys are trusted and
// whose values keep their labels.
func (r *run) inputs(inputs map[string]Input) (starlark.Value, error) {
	v := map[string]any{}
	fields := map[string]ifc.Label{}
	for name, in := range inputs {
		v[name] = in.Value
		fields[name] = in.Base
		for p, l := range in.Fields {
			fields[subPath(name, p)] = l
		}
	}
	return r.newRecord(v, bottom(), fields)
}

// errorResult is the result of a program that ended with err.
func (p *Program) errorResult(r *run, err error) Result {
	if errors.Is(err, errStopped) || r.ctx.Err() != nil {
		return r.result(Held)
	}
	res := r.result(Failed)
	res.ErrorLabel = join(r.pc, r.read)
	var pe *planError
	if errors.As(err, &pe) {
		res.ErrorLabel = join(pe.l, r.pc)
	}
	msg := err.Error()
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		msg = ee.Msg
		res.Line, res.Col = p.position(ee.CallStack)
	}
	msg = strings.TrimPrefix(msg, "Starlark computation cancelled: ")
	if res.Line > 0 {
		res.Error = fmt.Sprintf("%s:%d:%d: %s", p.file, res.Line, res.Col, msg)
	} else {
		res.Error = fmt.Sprintf("%s: %s", p.file, msg)
	}
	return res
}

// position is the innermost place in the program of a call stack.
func (p *Program) position(stack starlark.CallStack) (int, int) {
	for i := range stack {
		f := stack.At(i)
		if f.Pos.IsValid() && f.Pos.Filename() == p.file {
			return int(f.Pos.Line), int(f.Pos.Col)
		}
	}
	return 0, 0
}

// output is the result of a program that completed.
func (r *run) output(file string, v starlark.Value) Result {
	res := r.result(Completed)
	res.Base = r.pc
	if v == nil {
		return res
	}
	if rec, ok := v.(*record); ok {
		res.Base, res.Fields = join(rec.l, r.pc), rec.fieldsBelow()
		res.Output, _ = normJSON(rec.v)
		return res
	}
	out, l, err := toJSON(v)
	if err != nil {
		res = r.result(Failed)
		res.Error = fmt.Sprintf("%s: result: %v", file, err)
		res.ErrorLabel = join(l, r.pc)
		return res
	}
	res.Output, res.Base = out, join(l, r.pc)
	return res
}

// fieldsBelow are the labels of the paths below a node, relative to it.
func (x *record) fieldsBelow() map[string]ifc.Label {
	var out map[string]ifc.Label
	for _, p := range x.root.paths {
		rel, ok := strings.CutPrefix(p, x.path+".")
		if x.path == "" {
			rel, ok = p, p != ""
		}
		if ok {
			if out == nil {
				out = map[string]ifc.Label{}
			}
			out[rel] = x.root.fields[p]
		}
	}
	return out
}
