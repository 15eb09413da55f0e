package e2e

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads base/metrics with the page's key as a bearer token and
// parses it with Prometheus's own text parser.
func scrape(t *testing.T, base, key string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample is the value of the counter, gauge or histogram count of family
// name with the labels want (others ignored); -1 when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// sluice up --http serves /metrics to a scraper with the page's key: the
// agent's held payment shows as decisions by tool, outcome and rule, a
// held call waiting, calls and steps with their latencies, the egress
// request by host and the audit log's append latency; once a person
// approves, the approval latency. Without the key, nothing.
func TestMetricsOnTheWebServer(t *testing.T) {
	host := site(t, map[string]string{"/poisoned": agentPoisonedPage})
	w := newWorkspace(t, map[string]string{"sluice.yaml": deployment(host, "hijackable"),
		"answers.yaml": agentScript(host), "book.yaml": strings.Replace(agentBookFlow, "HIDE", "false", 1)})
	up := upAndReady(t, w)
	up.waitLine(t, "web page: ", time.Minute)
	b, err := os.ReadFile(w.path(".sluice/run/web.url"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	base, key := "http://"+u.Host, u.Query().Get("key")

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /metrics without the key: %s, want 403", resp.Status)
	}
	if fams := scrape(t, base, key); sample(fams, "sluice_held_calls", nil) != 0 {
		t.Fatalf("held calls before any run: %v", sample(fams, "sluice_held_calls", nil))
	}

	r := w.sluice("run", "book.yaml", "--input", "url=http://"+host+"/poisoned", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("exit code %d, want 4 (held)", r.code)
	}
	run := decodeRun(t, r.stdout)
	if len(run.Steps) != 1 || len(run.Steps[0].Rules) == 0 {
		t.Fatalf("steps %+v: want the payment held by a rule", run.Steps)
	}
	fams := scrape(t, base, key)
	// One count per rule behind the decision, by its name.
	for _, name := range run.Steps[0].Rules {
		found := false
		for _, m := range fams["sluice_decisions_total"].GetMetric() {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			if got["tool"] == "payment.charge" && got["decision"] == "approve" && got["rule"] == name && m.Counter.GetValue() == 1 {
				found = true
			}
		}
		if !found {
			t.Errorf("no count of the payment held by rule %s: %v", name, fams["sluice_decisions_total"])
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_held_calls", nil, 1},
		{"sluice_decisions_total", map[string]string{"tool": "web.fetch", "decision": "allow"}, 1},
		{"sluice_calls_total", map[string]string{"tool": "payment.charge", "outcome": "held"}, 1},
		{"sluice_calls_total", map[string]string{"tool": "web.fetch", "outcome": "completed"}, 1},
		{"sluice_calls_total", map[string]string{"tool": "llm.chat", "outcome": "completed"}, 2},
		{"sluice_call_duration_seconds", map[string]string{"tool": "web.fetch", "outcome": "completed"}, 1},
		{"sluice_step_duration_seconds", map[string]string{"tool": "llm.chat", "status": "held"}, 1},
		{"sluice_egress_requests_total", map[string]string{"host": host, "outcome": "performed"}, 1},
		{"sluice_approval_latency_seconds", nil, 0},
	} {
		if got := sample(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := sample(fams, "sluice_audit_append_duration_seconds", nil); n < 5 {
		t.Errorf("audit appends measured: %v, want every record of the run", n)
	}
	if n := sample(fams, "sluice_audit_records_total", map[string]string{"kind": "decision"}); n < 4 {
		t.Errorf("decision records counted: %v", n)
	}

	if r := w.sluice("approve", run.Steps[0].ApprovalID); r.code != 0 {
		t.Fatalf("approve: exit %d: %s", r.code, r.stderr)
	}
	// The run goes on in the background once approved: poll until the
	// payment went through.
	deadline := time.Now().Add(time.Minute)
	for {
		fams = scrape(t, base, key)
		if sample(fams, "sluice_calls_total", map[string]string{"tool": "payment.charge", "outcome": "completed"}) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the approved payment was not made within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := sample(fams, "sluice_approval_latency_seconds", nil); got != 1 {
		t.Errorf("approval latency observations %v, want 1", got)
	}
	if got := sample(fams, "sluice_decisions_total", map[string]string{"tool": "payment.charge", "decision": "allow", "rule": "approval"}); got != 1 {
		t.Errorf("the approval's decision: %v", got)
	}

	// A worker process that dies is started again, and counted.
	if got := sample(fams, "sluice_worker_restarts_total", map[string]string{"worker": "web"}); got > 0 {
		t.Fatalf("web restarted %v times before it was killed", got)
	}
	var victim int
	for pid, cmd := range childProcesses(t, up.cmd.Process.Pid) {
		if strings.Contains(cmd, "builtin:web") {
			victim = pid
		}
	}
	if victim == 0 {
		t.Fatalf("no web worker among %v", childProcesses(t, up.cmd.Process.Pid))
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if sample(scrape(t, base, key), "sluice_worker_restarts_total", map[string]string{"worker": "web"}) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed web worker was not counted as restarted within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
