package web

import (
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/display"
	"github.com/sluicehq/sluice/orchestrator/approval"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": when,
		"join": func(s []string) string { return display.List(s) },
		// show writes every hidden character of a string an attacker may
		// have written (a source, a tool name, an error, a reason) as an
		// escape; the template then escapes it for HTML.
		"show":       display.String,
		"quoteASCII": display.QuoteASCII,
		// lines splits a plan's program into its lines, each shown.
		"lines": func(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") },
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"runs", "run", "approvals"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/label.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse the %s page: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// labelView is a label as the page shows it.
type labelView struct {
	Integrity string
	Secrecy   []string
	Sources   []string
}

func newLabelView(l *ifc.Label) *labelView {
	if l == nil {
		return nil
	}
	return &labelView{Integrity: l.Integrity().String(), Secrecy: l.Secrecy(), Sources: l.Sources()}
}

// integrityClass is the CSS class of a label's integrity: trusted,
// untrusted, or unlabeled.
func integrityClass(l *ifc.Label) string {
	switch {
	case l == nil:
		return "unlabeled"
	case l.Integrity() == ifc.Untrusted:
		return "untrusted"
	default:
		return "trusted"
	}
}

// runRow is one line of the runs list.
type runRow struct {
	ID, Flow, Status  string
	Started, Finished time.Time
	Steps, Held       int
}

func runRows(runs []*audit.Run, held []engine.Approval) []runRow {
	waiting := map[string]int{}
	for _, a := range held {
		waiting[a.RunID]++
	}
	rows := make([]runRow, 0, len(runs))
	for _, r := range runs {
		row := runRow{ID: r.ID, Flow: r.Flow, Status: r.Status, Started: r.Started, Steps: len(r.Steps), Held: waiting[r.ID]}
		if r.Finished != nil {
			row.Finished = *r.Finished
		}
		rows = append(rows, row)
	}
	return rows
}

// stepView is one step of a run, in full.
type stepView struct {
	audit.StepTrace
	Class     string
	View      *labelView
	ArgLabels []namedLabel
	Output    *labelView
	// Took is how long the step took, "" when it was not timed;
	// InnerCalls the calls an agent (or a for_each) made.
	Took       string
	InnerCalls []callView
}

// callView is one call a step made.
type callView struct {
	audit.CallTrace
	Class string
	View  *labelView
	Took  string
}

// stepClass is a step's CSS class: skipped for a step that did not run,
// else the integrity of its label.
func stepClass(s *audit.StepTrace) string {
	if s.Status == "skipped" {
		return "skipped"
	}
	return integrityClass(s.Label)
}

// took is a duration in milliseconds as the page shows it.
func took(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

type namedLabel struct {
	Name  string
	Label *labelView
}

type runView struct {
	Run   *audit.Run
	Steps []stepView
	Graph graph
	Held  []engine.Approval
}

func newRunView(r *audit.Run, held []engine.Approval) runView {
	v := runView{Run: r, Graph: layout(r)}
	for _, a := range held {
		if a.RunID == r.ID {
			v.Held = append(v.Held, a)
		}
	}
	for _, s := range r.Steps {
		sv := stepView{StepTrace: s, Class: stepClass(&s), View: newLabelView(s.Label), Output: newLabelView(s.OutputLabel)}
		if len(s.Inner) > 1 || (len(s.Inner) == 1 && s.Inner[0].Tool != s.Tool) {
			for _, c := range s.Inner {
				sv.InnerCalls = append(sv.InnerCalls, callView{CallTrace: c, Class: integrityClass(c.Label), View: newLabelView(c.Label),
					Took: took(c.DurationMS)})
			}
		}
		if s.Started != nil {
			sv.Took = took(s.DurationMS)
		}
		for _, name := range slices.Sorted(maps.Keys(s.ArgLabels)) {
			l := s.ArgLabels[name]
			sv.ArgLabels = append(sv.ArgLabels, namedLabel{Name: name, Label: newLabelView(&l)})
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

// approvalView is one held call as the page shows it.
type approvalView struct {
	engine.Approval
	Args  []argView
	Class string
	View  *labelView
	Short string // the start of the hash, for reading aloud
	// Group, on the first held call of a step that holds several (a
	// for_each's elements), answers them together.
	Group *groupView
}

// groupView is the held calls of one step, answered together, each bound
// to its own hash.
type groupView struct {
	Step, RunID string
	Items       []groupItem
}

type groupItem struct{ ID, Hash string }

type argView struct {
	Name  string
	Value string // exact JSON, with invisible characters shown as escapes
	Class string
	Label *labelView
}

func approvalViews(held []engine.Approval) []approvalView {
	out := make([]approvalView, 0, len(held))
	for _, group := range approval.ByStep(held) {
		for i, a := range group {
			v := newApprovalView(a)
			if i == 0 && len(group) > 1 {
				v.Group = &groupView{Step: a.Step, RunID: a.RunID}
				for _, g := range group {
					v.Group.Items = append(v.Group.Items, groupItem{ID: g.ID, Hash: g.Hash})
				}
			}
			out = append(out, v)
		}
	}
	return out
}

// newApprovalView is one held call as the page shows it.
func newApprovalView(a engine.Approval) approvalView {
	l := a.Label
	v := approvalView{Approval: a, Class: integrityClass(&l), View: newLabelView(&l), Short: a.Hash}
	if len(v.Short) > 12 {
		v.Short = v.Short[:12]
	}
	for _, name := range slices.Sorted(maps.Keys(a.Args)) {
		arg := argView{Name: name, Value: showValue(a.Args[name]), Class: "unlabeled"}
		if l, ok := a.ArgLabels[name]; ok {
			arg.Class, arg.Label = integrityClass(&l), newLabelView(&l)
		}
		v.Args = append(v.Args, arg)
	}
	return v
}

// showValue renders an argument exactly, as JSON (strings quoted), with
// every character that would not show on screen (bidirectional controls,
// zero-width characters) written as a \u escape, so what a person reads
// is what would be sent. The template escapes it for HTML.
func showValue(v any) string {
	s, err := display.JSON(v, "  ")
	if err != nil {
		return fmt.Sprintf("(not JSON: %T)", v)
	}
	return s
}

// The graph of a run, laid out top down in rows by depth.
type graph struct {
	Width, Height int
	Nodes         []node
	Edges         []string // SVG path data
}

type node struct {
	X, Y, W, H int
	Lines      []nodeLine
	Class      string
	Secret     bool
	Title      string
	Anchor     string
}

type nodeLine struct {
	X, Y  int
	Text  string
	Class string
}

const (
	nodeW   = 210
	nodeH   = 96
	colGap  = 24
	rowGap  = 40
	margin  = 12
	maxText = 28
)

// layout places the run and its steps: an arrow leads from a step to each
// step that reads its output — as the flow says (audit.Run.Planned), or,
// for logs that do not list the flow's steps, to each later step whose
// arguments carry its tool's output — reduced to the arrows no other path
// implies; steps that read no step's output hang off the run.
func layout(r *audit.Run) graph {
	parents := parentsOf(r)
	reduce(parents)
	return place(r, parents)
}

// parentsOf lists, for each step, the earlier steps whose output it reads.
func parentsOf(r *audit.Run) [][]int {
	parents := make([][]int, len(r.Steps))
	index := map[string]int{}
	for i, s := range r.Steps {
		index[s.ID] = i
	}
	for i, s := range r.Steps {
		if r.Planned {
			for _, d := range s.Deps {
				if j, ok := index[d]; ok && j < i {
					parents[i] = append(parents[i], j)
				}
			}
			continue
		}
		if s.Label == nil {
			continue
		}
		sources := s.Label.Sources()
		for j := range i {
			if slices.Contains(sources, ifc.ToolSource(r.Steps[j].Tool)) {
				parents[i] = append(parents[i], j)
			}
		}
	}
	return parents
}

// reduce keeps, of each step's parents, those no other path implies.
func reduce(parents [][]int) {
	n := len(parents)
	// reach[i][j]: step j reaches step i through the arrows (j < i).
	reach := make([][]bool, n)
	for i := range n {
		reach[i] = make([]bool, n)
		for _, p := range parents[i] {
			reach[i][p] = true
			for k := range p {
				if reach[p][k] {
					reach[i][k] = true
				}
			}
		}
	}
	for i := range n {
		all := slices.Clone(parents[i])
		parents[i] = slices.DeleteFunc(parents[i], func(p int) bool {
			return slices.ContainsFunc(all, func(q int) bool { return q != p && reach[q][p] })
		})
	}
}

// place puts each step one row below its deepest parent, the run on row
// 0, and draws an arrow from each parent (from the run for a step with
// none).
func place(r *audit.Run, parents [][]int) graph {
	n := len(parents)
	depth := make([]int, n)
	rows := [][]int{{-1}} // row 0: the run
	for i := range n {
		depth[i] = 1
		for _, p := range parents[i] {
			depth[i] = max(depth[i], depth[p]+1)
		}
		for len(rows) <= depth[i] {
			rows = append(rows, nil)
		}
		rows[depth[i]] = append(rows[depth[i]], i)
	}
	var g graph
	pos := map[int][2]int{}
	cols := 0
	for d, row := range rows {
		cols = max(cols, len(row))
		for c, i := range row {
			x, y := margin+c*(nodeW+colGap), margin+d*(nodeH+rowGap)
			pos[i] = [2]int{x, y}
			g.Nodes = append(g.Nodes, newNode(r, i, x, y))
		}
	}
	g.Width = margin*2 + cols*nodeW + (cols-1)*colGap
	g.Height = margin*2 + len(rows)*nodeH + (len(rows)-1)*rowGap
	edge := func(from, to int) {
		a, b := pos[from], pos[to]
		x1, y1, x2, y2 := a[0]+nodeW/2, a[1]+nodeH, b[0]+nodeW/2, b[1]
		mid := (y1 + y2) / 2
		g.Edges = append(g.Edges, fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, x1, mid, x2, mid, x2, y2-4))
	}
	for i := range n {
		if len(parents[i]) == 0 {
			edge(-1, i)
		}
		for _, p := range parents[i] {
			edge(p, i)
		}
	}
	return g
}

func newNode(r *audit.Run, i, x, y int) node {
	nd := node{X: x, Y: y, W: nodeW, H: nodeH}
	line := func(text, class string) {
		nd.Lines = append(nd.Lines, nodeLine{X: x + 12, Y: y + 20 + 16*len(nd.Lines), Text: shorten(text), Class: class})
	}
	if i < 0 {
		nd.Class, nd.Title = "run", "run "+display.String(r.ID)
		line(display.String(r.Flow), "id")
		line("run "+shortID(r.ID), "")
		line(r.Status, "status "+r.Status)
		return nd
	}
	s := r.Steps[i]
	nd.Class, nd.Anchor = stepClass(&s), "step-"+s.ID
	nd.Title = display.String(s.ID + " (" + s.Tool + ")")
	line(display.String(s.ID), "id")
	line(display.String(s.Tool), "")
	status := s.Status
	if s.Decision != "" && s.Status != "skipped" {
		status += " · " + s.Decision
	}
	if s.Started != nil {
		status += " · " + took(s.DurationMS)
	}
	line(display.String(status), "status "+s.Status)
	if len(s.Rules) > 0 {
		names := make([]string, len(s.Rules))
		for i, r := range s.Rules {
			names[i], _, _ = strings.Cut(r, " (") // the rule, without where it is written
		}
		line("by "+display.List(names), "rules")
	}
	if s.Label != nil {
		if sec := s.Label.Secrecy(); len(sec) > 0 {
			nd.Secret = true
			line("secrecy: "+display.List(sec), "secrecy")
		}
	}
	return nd
}

func shortID(id string) string {
	if len(id) > 10 {
		return id[:10] + "…"
	}
	return id
}

func shorten(s string) string {
	if utf8.RuneCountInString(s) <= maxText {
		return s
	}
	return string([]rune(s)[:maxText-1]) + "…"
}
