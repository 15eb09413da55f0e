package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

func TestOnlyLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, addr string
		ok         bool
	}{
		{"default", "", true},
		{"ipv4 loopback", "127.0.0.1:0", true},
		{"other 127/8 address", "127.0.0.2:0", true},
		{"localhost", "localhost:0", true},
		{"all interfaces", ":0", false},
		{"unspecified ipv4", "0.0.0.0:0", false},
		{"unspecified ipv6", "[::]:0", false},
		{"private address", "192.168.1.10:8080", false},
		{"host name", "example.com:8080", false},
		{"name that ends in localhost", "evil.localhost.example:0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Addr: tc.addr, Backend: &backend{}}
			err := cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, ErrNotLoopback) {
				t.Fatalf("Validate(%q) = %v, want ErrNotLoopback", tc.addr, err)
			}
			s, err := New(cfg)
			if tc.ok != (err == nil) {
				t.Fatalf("New(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
			if s != nil {
				if err := s.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The page is readable only with the key of the URL New returns: any
// local user can reach a loopback port.
func TestKey(t *testing.T) {
	t.Parallel()
	c := start(t, heldPayment("acct_hotel_1"))
	if !c.key.HttpOnly || c.key.SameSite != http.SameSiteStrictMode {
		t.Errorf("key cookie %+v: want HttpOnly and SameSite=Strict", c.key)
	}
	if r := c.get("/approvals"); !strings.Contains(r.body, "acct_hotel_1") {
		t.Fatal("the page with the key does not show the held call")
	}
	key := strings.TrimPrefix(c.s.URL(), "http://"+c.s.Addr()+"/")
	for path, want := range map[string]string{"/approvals" + key: "/approvals", "//evil.example/" + key: "/"} {
		r := c.do(http.MethodGet, path, nil, nil)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != want {
			t.Errorf("GET %s: %d to %q, want 303 to %s", path, r.StatusCode, r.Header.Get("Location"), want)
		}
	}
	for _, tc := range []struct {
		name string
		path string
		edit func(*http.Request)
	}{
		{"no cookie", "/approvals", func(r *http.Request) { r.Header.Del("Cookie") }},
		{"wrong cookie", "/approvals", func(r *http.Request) {
			r.Header.Del("Cookie")
			r.AddCookie(&http.Cookie{Name: c.key.Name, Value: "guess"})
		}},
		{"wrong key", "/approvals?key=guess", func(r *http.Request) { r.Header.Del("Cookie") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodGet, tc.path, nil, tc.edit)
			if r.StatusCode != http.StatusForbidden || strings.Contains(r.body, "acct_hotel_1") {
				t.Fatalf("GET %s: %d, want 403 and nothing shown", tc.path, r.StatusCode)
			}
		})
	}
}

// Every answer must come from the page itself: with its token, from its
// origin, to its host. A forged one is refused and nothing is decided.
func TestForgedAnswersAreRefused(t *testing.T) {
	t.Parallel()
	b := heldPayment("acct_hotel_1")
	c := start(t, b)
	page := c.get("/approvals").body
	action := "/approvals/" + approvalID + "/approve"
	good := form(t, page, action)
	if good.Get("csrf") == "" || good.Get("hash") != callHash {
		t.Fatalf("form fields %v", good)
	}
	// The wrong token differs from the real one in its first character,
	// always: a fixed replacement would equal it now and then.
	tok := good.Get("csrf")
	wrong := "x" + tok[1:]
	if tok[0] == 'x' {
		wrong = "y" + tok[1:]
	}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for key := range good {
			f.Set(key, good.Get(key))
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	for _, tc := range []struct {
		name string
		form url.Values
		edit func(*http.Request)
	}{
		{"no token", with("csrf", ""), nil},
		{"wrong token", with("csrf", wrong), nil},
		{"token in the query only", with("csrf", ""), func(r *http.Request) { r.URL.RawQuery = "csrf=" + url.QueryEscape(good.Get("csrf")) }},
		{"foreign origin", good, func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }},
		{"origin on another port", good, func(r *http.Request) { r.Header.Set("Origin", "http://127.0.0.1:1") }},
		{"null origin", good, func(r *http.Request) { r.Header.Set("Origin", "null") }},
		{"no origin", good, func(r *http.Request) { r.Header.Del("Origin") }},
		{"cross-site fetch", good, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }},
		{"rebound host name", good, func(r *http.Request) {
			_, port, _ := strings.Cut(c.s.Addr(), ":")
			r.Host = "rebind.example:" + port
			r.Header.Set("Origin", "http://rebind.example:"+port)
		}},
		{"no key", good, func(r *http.Request) { r.Header.Del("Cookie") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodPost, action, tc.form, tc.edit)
			if r.StatusCode != http.StatusForbidden {
				t.Fatalf("POST %s: %d %s, want 403", action, r.StatusCode, r.body)
			}
		})
	}
	if got := b.answers(); len(got) != 0 {
		t.Fatalf("forged answers reached the backend: %+v", got)
	}
	// The control: the same form, sent as the page sends it, is taken.
	if r := c.do(http.MethodPost, action, good, nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the page's own answer: %d %s", r.StatusCode, r.body)
	}
	if got := b.answers(); len(got) != 1 {
		t.Fatalf("answers %+v, want the page's own", got)
	}
}

// A page from a rebound DNS name cannot be read: the Host must name the
// served address.
func TestForeignHostIsRefused(t *testing.T) {
	t.Parallel()
	c := start(t, heldPayment("acct_hotel_1"))
	_, port, _ := strings.Cut(c.s.Addr(), ":")
	for _, host := range []string{"rebind.example:" + port, "127.0.0.1:1", "rebind.example"} {
		r := c.do(http.MethodGet, "/approvals", nil, func(r *http.Request) { r.Host = host })
		if r.StatusCode != http.StatusForbidden || strings.Contains(r.body, "acct_hotel_1") {
			t.Errorf("Host %s: %d, want 403 and nothing shown", host, r.StatusCode)
		}
	}
	if r := c.do(http.MethodGet, "/approvals", nil, func(r *http.Request) { r.Host = "localhost:" + port }); r.StatusCode != http.StatusOK {
		t.Errorf("Host localhost:%s: %d, want 200", port, r.StatusCode)
	}
}

// Approve and Deny answer the call shown, bound to the hash shown, as the
// OS user on the web.
func TestAnswers(t *testing.T) {
	t.Parallel()
	for _, verb := range []string{"approve", "deny"} {
		t.Run(verb, func(t *testing.T) {
			t.Parallel()
			b := heldPayment("acct_hotel_1")
			c := start(t, b)
			page := c.get("/approvals").body
			action := "/approvals/" + approvalID + "/" + verb
			r := c.do(http.MethodPost, action, form(t, page, action), nil)
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/runs/"+runID {
				t.Fatalf("POST %s: %d to %q, want 303 to the run", action, r.StatusCode, r.Header.Get("Location"))
			}
			want := []decision{{approvalID, engine.Answer{Approved: verb == "approve", Who: "web:alice", Hash: callHash}}}
			if diff := cmp.Diff(want, b.answers()); diff != "" {
				t.Fatalf("answers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswerErrors(t *testing.T) {
	t.Parallel()
	b := heldPayment("acct_hotel_1")
	c := start(t, b)
	good := form(t, c.get("/approvals").body, "/approvals/"+approvalID+"/approve")
	noHash := url.Values{"csrf": {good.Get("csrf")}}
	if r := c.do(http.MethodPost, "/approvals/"+approvalID+"/approve", noHash, nil); r.StatusCode != http.StatusBadRequest {
		t.Errorf("no hash: %d, want 400", r.StatusCode)
	}
	if r := c.do(http.MethodPost, "/approvals/01UNKNOWN/approve", good, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown approval: %d, want 404", r.StatusCode)
	}
	if r := c.do(http.MethodPost, "/approvals/"+approvalID+"/ratify", good, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown answer: %d, want 404", r.StatusCode)
	}
	if r := c.do(http.MethodGet, "/approvals/"+approvalID+"/approve", nil, nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET an answer: %d, want 405", r.StatusCode)
	}
	if got := b.answers(); len(got) != 0 {
		t.Fatalf("answers %+v, want none", got)
	}
	// A call the backend lists as already answered gets no buttons.
	b.mu.Lock()
	b.approvals[0].Status = engine.ApprovalApproved
	b.mu.Unlock()
	if r := c.get("/approvals"); strings.Contains(r.body, "approve-"+approvalID) {
		t.Error("an answered call is shown with buttons")
	}
	if r := c.do(http.MethodPost, "/approvals/"+approvalID+"/approve", good, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("answered approval: %d, want 404", r.StatusCode)
	}
	b.mu.Lock()
	b.approvals[0].Status = engine.ApprovalPending
	b.mu.Unlock()
	b.mu.Lock()
	b.decideErr = errStale
	b.mu.Unlock()
	if r := c.do(http.MethodPost, "/approvals/"+approvalID+"/approve", good, nil); r.StatusCode != http.StatusConflict || !strings.Contains(r.body, errStale.Error()) {
		t.Errorf("refused answer: %d %q, want 409 with the reason", r.StatusCode, r.body)
	}
}

// An argument a web page chose is shown as text: markup in it is escaped,
// and characters that would not show are written as escapes. This is what
// a person approves a payment on.
func TestHostileArgumentsAreShownAsText(t *testing.T) {
	t.Parallel()
	const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&`
	b := heldPayment(hostile + "acct\u202eevil\u200b")
	b.runs[0].Steps[2].Error = hostile
	b.runs[0].Steps[2].Reasons = []string{hostile}
	b.approvals[0].Reasons = []string{hostile}
	c := start(t, b)
	for _, path := range []string{"/approvals", "/runs/" + runID} {
		body := c.get(path).body
		for _, bad := range []string{"<script>alert", "<img", "onerror=alert(2)>", "\u202e", "\u200b"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the page contains %q unescaped", path, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;") {
			t.Errorf("%s: the hostile value is not shown as text", path)
		}
		if strings.Count(body, "<script") != 1 {
			t.Errorf("%s: want only the page's own script tag", path)
		}
	}
	if body := c.get("/approvals").body; !strings.Contains(body, `acct\u202eevil\u200b`) {
		t.Error("invisible characters in an argument are not shown as escapes")
	}
}

// The approvals page shows what a person needs to decide: the tool, each
// argument exactly, its label and sources (the page that chose it), the
// rules and reasons, and the buttons.
func TestApprovalsPageShowsTheCall(t *testing.T) {
	t.Parallel()
	c := start(t, heldPayment("acct_attacker"))
	body := c.get("/approvals").body
	for _, want := range []string{
		"payment.charge",
		`<pre class="value">&#34;acct_attacker&#34;</pre>`,
		`<pre class="value">5</pre>`,
		`<code class="source">` + pageSource + `</code>`,
		`<span class="label untrusted">untrusted</span>`,
		"untrusted-payment (default.yaml:3:5)",
		"argument payee is untrusted",
		`id="approve-` + approvalID + `"`,
		`id="deny-` + approvalID + `"`,
		"web:alice",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the approvals page lacks %s", want)
		}
	}
	if r := c.get("/"); !strings.Contains(r.body, runID) || !strings.Contains(r.body, "1 waiting for approval") {
		t.Errorf("the runs page does not list the held run")
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	c := start(t, heldPayment("acct_hotel_1"))
	for _, path := range []string{"/", "/approvals", "/runs/" + runID, "/static/app.js", "/runs/missing"} {
		r := c.do(http.MethodGet, path, nil, nil)
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			"X-Frame-Options":         "DENY",
			"Cache-Control":           "no-store",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", path, k, got, want)
			}
		}
	}
	if r := c.do(http.MethodGet, "/runs/missing", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown run: %d, want 404", r.StatusCode)
	}
}

// The graph of the travel flow: offers feeds pick, pick feeds pay; the
// arrow offers→pay that pay's label also implies is left out.
func TestRunGraph(t *testing.T) {
	t.Parallel()
	run := heldPayment("acct_hotel_1").runs[0]
	g := layout(run)
	if len(g.Nodes) != 4 || len(g.Edges) != 3 {
		t.Fatalf("%d nodes, %d edges; want 4 and 3 (run→offers→pick→pay)", len(g.Nodes), len(g.Edges))
	}
	var rows []int
	var classes []string
	for _, n := range g.Nodes {
		rows = append(rows, n.Y)
		classes = append(classes, n.Class)
	}
	if !(rows[0] < rows[1] && rows[1] < rows[2] && rows[2] < rows[3]) {
		t.Errorf("rows %v: want one row per step of the chain", rows)
	}
	if want := []string{"run", "trusted", "untrusted", "untrusted"}; !cmp.Equal(classes, want) {
		t.Errorf("classes %v, want %v", classes, want)
	}

	// Two steps that carry no step's output sit side by side under the run.
	par := &audit.Run{ID: runID, Flow: "two", Steps: []audit.StepTrace{{ID: "a", Tool: "web.fetch"}, {ID: "b", Tool: "web.fetch"}}}
	g = layout(par)
	if len(g.Edges) != 2 || g.Nodes[1].Y != g.Nodes[2].Y || g.Nodes[1].X == g.Nodes[2].X {
		t.Errorf("parallel steps: %+v", g)
	}

	// With the flow's steps in the log, arrows follow what each step
	// reads, not its labels: a and b feed c; d reads nothing. Rows: the
	// run; a, b, d; c.
	planned := &audit.Run{ID: runID, Flow: "plan", Planned: true, Steps: []audit.StepTrace{
		{ID: "a", Tool: "web.fetch"}, {ID: "b", Tool: "calendar.free_slots"},
		{ID: "c", Tool: "payment.charge", Deps: []string{"a", "b"}}, {ID: "d", Tool: "web.fetch"}}}
	g = layout(planned)
	if len(g.Edges) != 5 {
		t.Errorf("planned: %d edges, want 5 (run→a, run→b, run→d, a→c, b→c)", len(g.Edges))
	}
	y := map[string]int{}
	for _, n := range g.Nodes[1:] {
		y[n.Anchor] = n.Y
	}
	if !(y["step-a"] == y["step-b"] && y["step-b"] == y["step-d"] && y["step-c"] > y["step-a"]) {
		t.Errorf("planned rows %v: want a, b and d side by side and c below", y)
	}

	c := start(t, heldPayment("acct_hotel_1"))
	body := c.get("/runs/" + runID).body
	for _, want := range []string{`<g class="node untrusted">`, `<g class="node trusted">`, "<svg", `id="step-pay"`,
		"untrusted-payment (default.yaml:3:5)", `<code class="source">` + pageSource + `</code>`, "waits for a person"} {
		if !strings.Contains(body, want) {
			t.Errorf("the run page lacks %s", want)
		}
	}
}

func TestShowValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"a<b>&c", `"a<b>&c"`},
		{"rtl\u202eoverride", `"rtl\u202eoverride"`},
		{"zero\u200bwidth\ufeff", `"zero\u200bwidth\ufeff"`},
		{"tag\U000E0041", `"tag\udb40\udc41"`},
		{"line\nbreak", `"line\nbreak"`},
		{"naïve café", `"naïve café"`},
		{120.5, "120.5"},
		{map[string]any{"b": 1, "a": []any{"x"}}, "{\n  \"a\": [\n    \"x\"\n  ],\n  \"b\": 1\n}"},
	} {
		if got := showValue(tc.in); got != tc.want {
			t.Errorf("showValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The address with the key is written for its owner only, and removed
// when the page stops.
func TestURLFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "run", "web.url")
	s, err := New(Config{Backend: &backend{}, URLFile: path})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != s.URL()+"\n" {
		t.Errorf("%s holds %q, want %q", path, b, s.URL())
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", path, err)
	}
}

// Sources (a mail's sender, an invite's organizer), tool names, reasons
// and errors are the attacker's to write as much as arguments are: each
// is shown with its controls, bidi controls and invisible characters
// escaped, and an argument that looks like a registry entry is flagged.
func TestWhatAnAttackerWroteIsShownEscaped(t *testing.T) {
	t.Parallel()
	const forged = "eve\x1b[2J\u202e@evil.example\n trusted, from user\u2028\u200b"
	const escaped = `eve\x1b[2J\u202e@evil.example\n trusted, from user\u2028\u200b`
	b := heldPayment("\u0430cct_hotel_1")
	src := ifc.UntrustedFrom("calendar:"+forged, pageSource)
	b.approvals[0].ArgLabels["payee"] = src
	b.approvals[0].Label = src
	b.approvals[0].Reasons = []string{"held: " + forged}
	b.approvals[0].Lookalikes = []engine.Lookalike{{Arg: "payee", Value: "\u0430cct_hotel_1", Like: "acct_hotel_1", Where: "registry payees"}}
	b.runs[0].Steps[1].Tool = "llm.extract" + forged
	b.runs[0].Steps[2].Label = &src
	b.runs[0].Steps[2].Error = forged
	b.runs[0].Steps[2].Reasons = []string{forged}
	c := start(t, b)
	for _, path := range []string{"/approvals", "/runs/" + runID} {
		body := c.get(path).body
		for _, r := range []rune{'\x1b', '\u202e', '\u2028', '\u200b'} {
			if strings.ContainsRune(body, r) {
				t.Errorf("%s: the page holds %U raw", path, r)
			}
		}
		if strings.Contains(body, "\n trusted, from user") {
			t.Errorf("%s: the page holds the forged line raw", path)
		}
		if !strings.Contains(body, `<code class="source">calendar:`+escaped+`</code>`) {
			t.Errorf("%s: the page does not show the source escaped", path)
		}
	}
	body := c.get("/approvals").body
	if want := `looks like <code>acct_hotel_1</code> (registry payees) but is not: <code>&#34;\u0430cct_hotel_1&#34;</code>`; !strings.Contains(body, want) {
		t.Errorf("the approvals page does not flag the lookalike payee: want %s", want)
	}
}

// The held elements of one for_each step are shown together and answered
// together, each bound to the hash the page showed for it; a form whose
// hash no longer matches one of them answers none.
func TestStepAnsweredTogether(t *testing.T) {
	t.Parallel()
	b := heldPayment("acct_hotel_1")
	base := b.approvals[0]
	b.approvals = nil
	for i, payee := range []string{"acct_a", "acct_b", "acct_c"} {
		a := base
		a.ID, a.Index, a.Hash = fmt.Sprintf("A%d", i), ptr(i), fmt.Sprintf("%064d", i)
		a.Args = map[string]any{"amount": 5, "currency": "EUR", "payee": payee}
		b.approvals = append(b.approvals, a)
	}
	c := start(t, b)
	page := c.get("/approvals").body
	if !strings.Contains(page, "holds 3 calls") || !strings.Contains(page, "Approve all 3") {
		t.Fatalf("the page does not offer to answer the step's calls together:\n%s", page)
	}
	i := strings.Index(page, `action="/approvals/step/approve"`)
	end := i + strings.Index(page[i:], "</form>")
	f := url.Values{}
	for _, m := range regexp.MustCompile(`name="(csrf|id|hash)" value="([^"]*)"`).FindAllStringSubmatch(page[i:end], -1) {
		f.Add(m[1], unescapeAttr(m[2]))
	}
	if len(f["id"]) != 3 || len(f["hash"]) != 3 {
		t.Fatalf("the step's form names %v", f)
	}
	stale := url.Values{"csrf": f["csrf"], "id": f["id"], "hash": append([]string{f["hash"][0], strings.Repeat("f", 64)}, f["hash"][2:]...)}
	if r := c.do(http.MethodPost, "/approvals/step/approve", stale, nil); r.StatusCode != http.StatusConflict || len(b.decided) != 0 {
		t.Fatalf("a stale hash: %d, answered %v", r.StatusCode, b.decided)
	}
	if r := c.do(http.MethodPost, "/approvals/step/approve", f, nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve all: %d %s", r.StatusCode, r.body)
	}
	if len(b.decided) != 3 {
		t.Fatalf("answered %v", b.decided)
	}
	for i, d := range b.decided {
		if d.ID != fmt.Sprintf("A%d", i) || !d.Answer.Approved || d.Answer.Hash != fmt.Sprintf("%064d", i) || d.Answer.Who != "web:alice" {
			t.Errorf("answer %d: %+v", i, d)
		}
	}
	noToken := url.Values{"id": f["id"], "hash": f["hash"]}
	if r := c.do(http.MethodPost, "/approvals/step/deny", noToken, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("without the form token: %d", r.StatusCode)
	}
}

// An agent step lists the calls it made — the held payment among them —
// each with its decision and time; the step shows its time; a step that
// did not run is drawn as skipped, not by a label it never had; a plan
// step shows its program.
func TestRunPageInnerCallsAndSkipped(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	u := ifc.UntrustedFrom(pageSource)
	run := &audit.Run{ID: runID, Flow: "agent-book", Started: t0, Status: "held", Planned: true, Steps: []audit.StepTrace{
		{ID: "booker", Tool: "llm.chat", Status: "held", Decision: "approve", Label: &u, Started: &t0, DurationMS: 5000,
			Program: "page = web.fetch(url=\"<x>\")\nresult = page[\"title\"]\u202e\n", Inner: []audit.CallTrace{
				{Tool: "llm.chat", Decision: "allow", Status: "completed", Started: t0, DurationMS: 2000},
				{Tool: "payment.charge", Decision: "approve", Rules: []string{"untrusted-never-pays-alone (builtin/default.yaml:21:5)"}, Label: &u,
					Status: "held", Started: t0.Add(5 * time.Second)},
			}},
		{ID: "note", Tool: "web.fetch", Deps: []string{"booker"}, Status: "skipped", Label: ptr(ifc.TrustedFrom(ifc.SourceUser))},
	}}
	g := layout(run)
	if g.Nodes[2].Class != "skipped" {
		t.Errorf("the skipped step's node has class %q", g.Nodes[2].Class)
	}
	var lines []string
	for _, l := range g.Nodes[1].Lines {
		lines = append(lines, l.Text)
	}
	if !slices.Contains(lines, "held · approve · 5s") {
		t.Errorf("booker's node lines %q: want its status, decision and time", lines)
	}
	c := start(t, &backend{runs: []*audit.Run{run}})
	body := c.get("/runs/" + runID).body
	for _, want := range []string{`<section class="step skipped" id="step-note">`, `<span class="took">5s</span>`, `<table class="calls">`,
		`<tr class="call untrusted"><td><code>payment.charge</code></td><td><span class="status held">held</span>`,
		`<td>2s</td>`, "untrusted-never-pays-alone (builtin/default.yaml:21:5)", `<g class="node skipped">`,
		// A plan step's program, a line at a time, escaped.
		"<dt>Program</dt><dd><pre class=\"program\">page = web.fetch(url=&#34;&lt;x&gt;&#34;)\nresult = page[&#34;title&#34;]\\u202e\n</pre>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the run page lacks %s", want)
		}
	}
}

// "Approve and remember" approves the call with the scope the form names;
// a form that ticks no argument answers nothing.
func TestRememberOnThePage(t *testing.T) {
	t.Parallel()
	b := heldPayment("acct_hotel_1")
	c := start(t, b)
	page := c.get("/approvals").body
	action := "/approvals/" + approvalID + "/remember"
	if !strings.Contains(page, `name="pin" value="payee"`) {
		t.Fatalf("the page offers no argument to keep:\n%s", page)
	}
	f := form(t, page, action)
	if r := c.do(http.MethodPost, action, f, nil); r.StatusCode != http.StatusBadRequest || len(b.answers()) != 0 {
		t.Fatalf("no argument ticked: %d, answers %v", r.StatusCode, b.answers())
	}
	f.Set("pin", "payee")
	f.Set("sum_arg", "amount")
	f.Set("sum_max", "300")
	f.Set("until", "2027-01-31")
	r := c.do(http.MethodPost, action, f, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/runs/"+runID {
		t.Fatalf("POST %s: %d to %q, want 303 to the run", action, r.StatusCode, r.Header.Get("Location"))
	}
	until := time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC)
	want := []decision{{approvalID, engine.Answer{Approved: true, Who: "web:alice", Hash: callHash,
		Remember: &engine.RememberScope{Pin: []string{"payee"}, SumArg: "amount", MaxSumPerDay: 300, Until: until}}}}
	if diff := cmp.Diff(want, b.answers()); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
}

// "Approve and endorse" approves the call and endorses the values of the
// arguments the form ticks, for the tools it names; a form that ticks no
// argument answers nothing.
func TestEndorseOnThePage(t *testing.T) {
	t.Parallel()
	b := heldPayment("acct_hotel_1")
	c := start(t, b)
	page := c.get("/approvals").body
	action := "/approvals/" + approvalID + "/endorse"
	if !strings.Contains(page, `name="endorse" value="payee"`) {
		t.Fatalf("the page offers no argument to endorse:\n%s", page)
	}
	f := form(t, page, action)
	if r := c.do(http.MethodPost, action, f, nil); r.StatusCode != http.StatusBadRequest || len(b.answers()) != 0 {
		t.Fatalf("no argument ticked: %d, answers %v", r.StatusCode, b.answers())
	}
	f.Set("endorse", "payee")
	f.Set("tools", "payment.charge, payment.refund")
	r := c.do(http.MethodPost, action, f, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/runs/"+runID {
		t.Fatalf("POST %s: %d to %q, want 303 to the run", action, r.StatusCode, r.Header.Get("Location"))
	}
	want := []decision{{approvalID, engine.Answer{Approved: true, Who: "web:alice", Hash: callHash,
		Endorse: &engine.EndorseScope{Args: []string{"payee"}, Tools: []string{"payment.charge", "payment.refund"}}}}}
	if diff := cmp.Diff(want, b.answers()); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
}
