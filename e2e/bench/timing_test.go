package main

import (
	"strings"
	"testing"
	"time"
)

// The bench itself runs only in make bench; these tests cover how it
// says how long it will take.

func TestShort(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "0 s",
		41 * time.Second:         "41 s",
		41400 * time.Millisecond: "41 s",
		2 * time.Minute:          "2 min",
		190 * time.Second:        "3 min 10 s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%s) = %q, want %q", d, got, want)
		}
	}
}

func benchOptions() options {
	return options{runs: 3, dur: 1500 * time.Millisecond, scale: 10000, goCount: 3, cpuProfile: "hop.pprof"}
}

// Every group of make bench has an estimate, and the held runs and the
// loops count in it.
func TestEstimateFollowsThePlan(t *testing.T) {
	o := benchOptions()
	for _, g := range []string{"gobench", "hop", "mcp", "flow", "agent", "plan", "tracing", "jetstream", "labels", "startup", "scale", "js-scale"} {
		if estimate(g, o) <= 0 {
			t.Errorf("%s: no estimate", g)
		}
	}
	if got := estimate("no such group", o); got != 0 {
		t.Errorf("unknown group: %s, want 0", got)
	}
	more := o
	more.runs, more.scale, more.goCount = 6, 20000, 6
	for _, g := range []string{"gobench", "hop", "scale", "js-scale"} {
		if estimate(g, more) <= estimate(g, o) {
			t.Errorf("%s: %s with the plan doubled, not more than %s", g, estimate(g, more), estimate(g, o))
		}
	}
	none := o
	none.scale = 0
	if got := estimate("scale", none); got != 0 {
		t.Errorf("scale 0: %s, want 0", got)
	}
}

// The last run's time replaces the plan's for a group run with the same
// plan, and only then.
func TestEstimateTakesTheLastRunOfTheSamePlan(t *testing.T) {
	o := benchOptions()
	var b strings.Builder
	last := map[string]groupTime{
		"hop":  {Seconds: 95, Plan: planKey(o)},
		"flow": {Seconds: 500, Plan: "runs=1 dur=1s scale=0 gocount=1 profile=false"},
	}
	est := printEstimate(&b, []string{"hop", "flow"}, o, last)
	if est["hop"] != 95*time.Second {
		t.Errorf("hop: %s, want the last run's 1m35s", est["hop"])
	}
	if est["flow"] != estimate("flow", o) {
		t.Errorf("flow: %s, want the plan's %s, not the time of a run of another plan", est["flow"], estimate("flow", o))
	}
	line := b.String()
	for _, want := range []string{"# about ", "1 groups from the last run's times", "hop ~1 min 35 s", "flow ~" + short(estimate("flow", o))} {
		if !strings.Contains(line, want) {
			t.Errorf("estimate line %q lacks %q", line, want)
		}
	}
	b.Reset()
	printEstimate(&b, []string{"hop"}, o, last)
	if !strings.Contains(b.String(), "from the last run's times") {
		t.Errorf("estimate line %q does not say it is the last run's", b.String())
	}
	b.Reset()
	printEstimate(&b, []string{"flow"}, o, nil)
	if !strings.Contains(b.String(), "from the plan") {
		t.Errorf("estimate line %q does not say it is the plan's", b.String())
	}
}
