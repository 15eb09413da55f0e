package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Flows served by the front door (sluice mcp --flows), and its stateless
// HTTP mode, driven by clients built on the MCP SDK against the binary.

const mcpPayFlow = `name: pay-direct
inputs:
  amount: {type: number}
  payee: {type: string}
  memo: {type: string, default: ""}
steps:
  - id: pay
    call: payment.charge
    with: {amount: "${inputs.amount}", currency: EUR, payee: "${inputs.payee}", memo: "${inputs.memo}"}
outputs:
  charge: "${steps.pay.output.charge_id}"
`

const mcpInvoiceFlow = `name: pay-invoice
inputs:
  url: {type: string}
steps:
  - id: fetch
    call: web.fetch
    with: {url: "${inputs.url}"}
  - id: pay
    call: payment.charge
    with: {amount: 20, currency: EUR, payee: "${steps.fetch.output.title}"}
outputs:
  charge: "${steps.pay.output.charge_id}"
`

const mcpReadFlow = `name: read-invoice
inputs:
  url: {type: string}
steps:
  - {id: fetch, call: web.fetch, with: {url: "${inputs.url}"}}
outputs:
  title: "${steps.fetch.output.title}"
`

// heldApproval returns the id of the one held call of w, waiting for it.
func heldApproval(t *testing.T, w *workspace) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var held []struct {
			ID string `json:"id"`
		}
		r := w.sluice("approvals", "--json")
		if json.Unmarshal([]byte(r.stdout), &held) == nil && len(held) == 1 {
			return held[0].ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("no one held call: %s %s", r.stdout, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A flow is a tool named after it, whose input schema is the flow's
// inputs. Called by a session that was shown nothing untrusted, it runs
// with the inputs the client typed and returns its outputs. A flow that
// pays the payee an untrusted page names is held: the client is told
// so, is not asked (the call carries a value it was not shown), and the
// ledger stays as it was; once a person approves it, the same call made
// again returns that run's outcome, and no second run is started. A flow
// whose outputs come from an untrusted page is sent as a handle.
func TestMCPFrontDoorFlows(t *testing.T) {
	host := site(t, map[string]string{"/invoice": mcpPoison})
	w := newWorkspace(t, map[string]string{"sluice.yaml": mcpDeployment(host),
		"pay.yaml": mcpPayFlow, "invoice.yaml": mcpInvoiceFlow, "read.yaml": mcpReadFlow, "bad.yaml": strings.Replace(mcpPayFlow, "payment.charge", "payment.refund", 1)})
	if r := w.sluice("mcp", "--flows", "bad.yaml"); r.code != 1 || !strings.Contains(r.stderr, "bad.yaml:8:11:") || !strings.Contains(r.stderr, "payment.refund") {
		t.Fatalf("a flow that does not load: exit %d %s", r.code, r.stderr)
	}
	c := newMCPClient(t, w, true, true, "--tools", "web.fetch", "--flows", "pay.yaml,invoice.yaml", "--wait", "2s")
	tools, err := c.session.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var pay *mcp.Tool
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
		if tl.Name == "pay-direct" {
			pay = tl
		}
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "pay-direct,pay-invoice,web.fetch" || pay == nil {
		t.Fatalf("tools offered: %v", names)
	}
	schema, _ := json.Marshal(pay.InputSchema)
	if !strings.Contains(string(schema), `"required":["amount","payee"]`) || !strings.Contains(string(schema), `"amount":{"type":"number"}`) {
		t.Fatalf("pay-direct's input schema: %s", schema)
	}
	if out := c.call("pay-direct", map[string]any{"amount": 20}); !strings.Contains(out, "pay-direct") || !strings.Contains(out, "required") || len(w.ledger()) != 0 {
		t.Fatalf("a flow called without a required input: %q", out)
	}
	paid := c.call("pay-direct", map[string]any{"amount": 20, "payee": "acct_shop"})
	if !strings.Contains(paid, `"charge":"ch_`) || strings.Contains(paid, "$handle") {
		t.Fatalf("pay-direct: %q; want its outputs", paid)
	}
	if lines := w.ledger(); len(lines) != 1 || !strings.Contains(lines[0], "acct_shop") {
		t.Fatalf("ledger: %v", lines)
	}

	// A new session: this one was shown a payment (secrecy payment),
	// which its flows' inputs now carry, and a fetch with them is denied.
	c.close()
	c = newMCPClient(t, w, true, true, "--flows", "read.yaml,invoice.yaml,pay.yaml", "--wait", "2s")
	args := map[string]any{"url": "http://" + host + "/invoice"}
	// A flow that reads an untrusted page returns a handle, whatever
	// the page says.
	read := c.call("read-invoice", args)
	if read != `{"$handle":"h1","fields":["title"],"tool":"read-invoice"}` {
		t.Fatalf("read-invoice: %q; want a handle", read)
	}
	held := c.call("pay-invoice", args)
	if !strings.Contains(held, "held for approval") || strings.Contains(held, "mallory") {
		t.Fatalf("pay-invoice: %q; want held, and nothing of the page", held)
	}
	if got := c.elicited(); len(got) != 0 {
		t.Fatalf("the client was asked about a call that carries a value it was not shown: %q", got)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger while held: %v", lines)
	}
	id := heldApproval(t, w)
	if r := w.sluice("approve", id); r.code != 0 {
		t.Fatalf("sluice approve: exit %d %s", r.code, r.stderr)
	}
	// Told that the run was held on the page's value, the session's
	// label is the page's: the outcome is shown.
	again := c.call("pay-invoice", args)
	if !strings.Contains(again, `"charge":"ch_`) {
		t.Fatalf("the same call again: %q; want the held run's outputs", again)
	}
	if lines := w.ledger(); len(lines) != 2 || !strings.Contains(lines[1], "acct_mallory") {
		t.Fatalf("ledger after the approval: %v", lines)
	}
	// A handle's value as a flow's input: the payment is held, and the
	// client is not asked about a value it was not shown.
	if out := c.call("pay-direct", map[string]any{"amount": 5, "payee": map[string]any{"$handle": "h1", "field": "title"}}); !strings.Contains(out, "held for approval") || strings.Contains(out, "mallory") {
		t.Fatalf("pay-direct with the handle's value: %q; want held\n%s", out, w.sluice("runs", "--json").stdout)
	}
	if got := c.elicited(); len(got) != 0 || len(w.ledger()) != 2 {
		t.Fatalf("pay-direct with the handle's value: asked %q, ledger %v", got, w.ledger())
	}
	// Each call that started a flow is a run of its own in the audit log,
	// beside the session's.
	r := w.sluice("runs", "--json")
	if strings.Count(r.stdout, `"pay-invoice"`) != 1 || strings.Count(r.stdout, `"pay-direct"`) != 2 {
		t.Fatalf("sluice runs: %s %s", r.stdout, r.stderr)
	}
}

// A flow started by a session that was shown an untrusted page runs with
// inputs that carry the session's label: its payment to a payee the
// client typed is held, as the same payment made as a tool would be, and
// the client's user is asked through elicitation (nothing in it is hidden
// from the client). Approved, it is charged and the outputs come back.
func TestMCPFrontDoorFlowCarriesTheSessionLabel(t *testing.T) {
	host := site(t, map[string]string{"/invoice": mcpPoison})
	w := newWorkspace(t, map[string]string{"sluice.yaml": mcpDeployment(host), "pay.yaml": mcpPayFlow})
	c := newMCPClient(t, w, true, true, "--tools", "web.fetch", "--flows", "pay.yaml", "--hide-untrusted=false")
	if page := c.call("web.fetch", map[string]any{"url": "http://" + host + "/invoice"}); !strings.Contains(page, "acct_mallory") {
		t.Fatalf("with --hide-untrusted=false the client is shown the page; got %q", page)
	}
	out := c.call("pay-direct", map[string]any{"amount": 20, "payee": "acct_shop"})
	asked := c.elicited()
	if len(asked) != 1 || !strings.Contains(asked[0], "payment.charge") || !strings.Contains(asked[0], "acct_shop") {
		t.Fatalf("a flow started after an untrusted page: result %q, elicitation messages %q", out, asked)
	}
	if !strings.Contains(out, `"charge":"ch_`) {
		t.Fatalf("the approved flow's result: %q", out)
	}
	if lines := w.ledger(); len(lines) != 1 || !strings.Contains(lines[0], "acct_shop") {
		t.Fatalf("ledger: %v", lines)
	}
}

// mcpHTTPEndpoint starts sluice mcp over HTTP in w and returns its URL and
// token.
func mcpHTTPEndpoint(t *testing.T, w *workspace, args ...string) (*process, string, string) {
	t.Helper()
	p := w.start(append([]string{"mcp", "--http", "127.0.0.1:0"}, args...)...)
	line := strings.TrimSuffix(p.waitLine(t, "sluice mcp: serving ", time.Minute), ")")
	b, err := os.ReadFile(line[strings.LastIndex(line, " ")+1:])
	var ep struct{ URL, Token string }
	if err != nil || json.Unmarshal(b, &ep) != nil || ep.Token == "" {
		t.Fatalf("endpoint file: %s %v", b, err)
	}
	return p, ep.URL, ep.Token
}

// In stateless mode every request is a connection of its own, so a client
// could start afresh at each call. It cannot launder its label that way:
// all requests are one session. Shown a payment's result (secrecy
// payment), a client's fetch from a new connection is denied, as it would
// be in the same one; shown an untrusted page, a new connection's payment
// to a payee it typed is held, where the same payment from a session that
// saw no page went through.
func TestMCPFrontDoorStatelessKeepsTheLabel(t *testing.T) {
	host := site(t, map[string]string{"/invoice": mcpPoison})
	w := newWorkspace(t, map[string]string{"sluice.yaml": mcpDeployment(host)})
	if r := w.sluice("mcp", "--tools", "payment.charge", "--stateless"); r.code != 2 || !strings.Contains(r.stderr, "--http") {
		t.Fatalf("--stateless without --http: exit %d %s", r.code, r.stderr)
	}
	pay := map[string]any{"amount": 5, "currency": "EUR", "payee": "acct_shop"}
	page := map[string]any{"url": "http://" + host + "/invoice"}

	p, call := statelessFrontDoor(t, w)
	if out := call("payment.charge", pay); !strings.Contains(out, `"succeeded"`) {
		t.Fatalf("the first payment: %s", out)
	}
	if out := call("web.fetch", page); !strings.Contains(out, "denied") || strings.Contains(out, "mallory") {
		t.Fatalf("a fetch from a new connection after a payment's result: %s; want denied", out)
	}
	stopFrontDoor(t, p)

	p, call = statelessFrontDoor(t, w)
	if out := call("web.fetch", page); !strings.Contains(out, "acct_mallory") {
		t.Fatalf("the page: %s", out)
	}
	if out := call("payment.charge", pay); !strings.Contains(out, "held for approval") {
		t.Fatalf("a payment from a new connection after the page: %s; want held", out)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger: %v", lines)
	}
	stopFrontDoor(t, p)
	// Each front door's one session is one run in the audit log.
	if r := w.sluice("runs", "--json"); strings.Count(r.stdout, `"mcp:stateless"`) != 2 {
		t.Fatalf("sluice runs: %s", r.stdout)
	}
}

// statelessFrontDoor starts sluice mcp --stateless over HTTP in w, and
// returns a function that makes each call from a new connection.
func statelessFrontDoor(t *testing.T, w *workspace) (*process, func(string, map[string]any) string) {
	t.Helper()
	p, url, token := mcpHTTPEndpoint(t, w, "--tools", "web.fetch,payment.charge", "--stateless", "--hide-untrusted=false", "--wait", "2s")
	return p, func(name string, args map[string]any) string {
		t.Helper()
		client := mcp.NewClient(&mcp.Implementation{Name: "stateless-agent", Version: "1"}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url,
			HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
}

func stopFrontDoor(t *testing.T, p *process) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sluice mcp exit %d", code)
	}
}
