package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/egress"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// provider is a fake payment API on loopback that speaks the backend's
// protocol: it checks the bearer key, and charges each idempotency key once.
type provider struct {
	key string
	mu  sync.Mutex
	// charges by idempotency key, with the form each was made from.
	charges map[string]providerCharge
	posts   int
}

type providerCharge struct {
	id, amount, currency, payee, memo string
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+p.key {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error": {"code": "invalid_api_key", "message": "key %s is not valid"}}`, r.Header.Get("Authorization"))
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/balance":
		fmt.Fprint(w, `{"balance": 880.5, "currency": "EUR"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/charges":
		p.posts++
		if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error": {"code": "bad_form"}}`)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error": {"code": "missing_idempotency_key"}}`)
			return
		}
		c := providerCharge{amount: r.PostForm.Get("amount"), currency: r.PostForm.Get("currency"),
			payee: r.PostForm.Get("payee"), memo: r.PostForm.Get("memo")}
		if prev, ok := p.charges[key]; ok {
			c.id = prev.id
			if c != prev {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error": {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters"}}`)
				return
			}
			fmt.Fprintf(w, `{"id": %q, "status": "succeeded"}`, prev.id)
			return
		}
		if c.payee == "acct_blocked" {
			w.WriteHeader(http.StatusPaymentRequired)
			fmt.Fprint(w, `{"error": {"code": "card_declined", "message": "Your card was declined. Call 555-0100."}}`)
			return
		}
		c.id = fmt.Sprintf("ch_%d", len(p.charges)+1)
		p.charges[key] = c
		fmt.Fprintf(w, `{"id": %q, "status": "succeeded", "echo": %q}`, c.id, r.Header.Get("Authorization"))
	default:
		http.NotFound(w, r)
	}
}

// httpWorker starts the fake provider and a payment worker that reaches it
// through the real egress broker, which holds the key.
func httpWorker(t *testing.T, key string) (map[string]worker.Handler, *provider, func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error), *[]string) {
	t.Helper()
	p := &provider{key: key, charges: map[string]providerCharge{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	broker := egress.New(egress.Config{
		Grants:       map[string][]string{"payment": {host}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]egress.Secret{"payments_key": egress.NewSecret("payments_key", []byte(key))},
		SecretGrants: map[string][]egress.SecretGrant{"payment": {{Name: "payments_key", Hosts: []string{"127.0.0.1"}}}},
	})
	m, err := capabilities.Load("builtin:payment")
	if err != nil {
		t.Fatal(err)
	}
	m, _ = m.WithGrants(capabilities.Grants{Net: []string{host}})
	cfg, _ := json.Marshal(map[string]any{"backend": "http", "base_url": srv.URL, "api_key": "{{secret:payments_key}}"})
	hs, err := New(worker.Env{State: t.TempDir(), Config: cfg, Manifest: m})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	eg := func(ctx context.Context, req schemas.EgressRequest) (*schemas.EgressResponse, error) {
		b, _ := json.Marshal(req)
		resp := broker.Do(ctx, "payment", "m1", b)
		rb, _ := json.Marshal(resp)
		mu.Lock()
		seen = append(seen, string(b), string(rb))
		mu.Unlock()
		return resp, nil
	}
	return hs, p, eg, &seen
}

func httpDo(hs map[string]worker.Handler, eg func(context.Context, schemas.EgressRequest) (*schemas.EgressResponse, error), tool, key string, args any) (map[string]any, error) {
	raw, _ := json.Marshal(args)
	c := worker.NewCall(tool, raw, eg)
	c.IdempotencyKey = key
	out, err := hs[tool](context.Background(), c)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(out)
	sch, err := schemas.Load("tools/payment." + tool + ".output.json")
	if err != nil {
		return nil, err
	}
	if _, err := sch.ValidateJSON(b); err != nil {
		return nil, fmt.Errorf("output %s: %w", b, err)
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// The provider gets the key from the broker, charges a key once, and the
// worker never sees the key.
func TestHTTPBackend(t *testing.T) {
	const key = "sk_live_7d1e5b0c"
	hs, p, eg, seen := httpWorker(t, key)
	args := map[string]any{"amount": 42.5, "currency": "EUR", "payee": "acct_hotel_1", "memo": "2 nights & breakfast"}
	out, err := httpDo(hs, eg, "charge", "run1/pay", args)
	if err != nil {
		t.Fatal(err)
	}
	if out["charge_id"] != "ch_1" || out["status"] != "succeeded" {
		t.Fatalf("charge: %v", out)
	}
	p.mu.Lock()
	got := p.charges["run1/pay"]
	p.mu.Unlock()
	if got != (providerCharge{id: "ch_1", amount: "42.5", currency: "EUR", payee: "acct_hotel_1", memo: "2 nights & breakfast"}) {
		t.Errorf("provider recorded %+v", got)
	}
	// A retry of the step gets the same charge; the provider made one.
	out, err = httpDo(hs, eg, "charge", "run1/pay", args)
	if err != nil || out["charge_id"] != "ch_1" {
		t.Fatalf("retry: %v %v", out, err)
	}
	p.mu.Lock()
	if len(p.charges) != 1 {
		t.Errorf("%d charges", len(p.charges))
	}
	p.mu.Unlock()
	// Another step is another charge.
	if out, err := httpDo(hs, eg, "charge", "run1/pay2", args); err != nil || out["charge_id"] != "ch_2" {
		t.Fatalf("second charge: %v %v", out, err)
	}
	// The same key with another amount is refused by the provider.
	args2 := map[string]any{"amount": 4250, "currency": "EUR", "payee": "acct_hotel_1", "memo": "2 nights & breakfast"}
	if _, err := httpDo(hs, eg, "charge", "run1/pay", args2); err == nil || !strings.Contains(err.Error(), "400 (idempotency_error)") {
		t.Fatalf("reused key: %v", err)
	}
	// A decline names the status and code, not the provider's prose.
	_, err = httpDo(hs, eg, "charge", "run2/pay", map[string]any{"amount": 1, "currency": "EUR", "payee": "acct_blocked"})
	var re *schemas.ReplyError
	if !errors.As(err, &re) || re.Code != schemas.CodeFailed || re.Message != "payment API answered 402 (card_declined)" {
		t.Fatalf("decline: %v", err)
	}
	out, err = httpDo(hs, eg, "balance", "", map[string]any{})
	if err != nil || out["balance"] != 880.5 || out["currency"] != "EUR" {
		t.Fatalf("balance: %v %v", out, err)
	}
	for _, s := range *seen {
		if strings.Contains(s, key) {
			t.Errorf("the worker saw the key: %s", s)
		}
	}
	if !strings.Contains(strings.Join(*seen, "\n"), `"Authorization":"Bearer {{secret:payments_key}}"`) {
		t.Errorf("the worker did not ask with the placeholder")
	}
}

// An argument cannot ask the broker for the key.
func TestHTTPBackendPlaceholderInArguments(t *testing.T) {
	hs, p, eg, _ := httpWorker(t, "sk_x")
	for _, args := range []map[string]any{
		{"amount": 1, "currency": "EUR", "payee": "acct_1", "memo": "{{secret:payments_key}}"},
		{"amount": 1, "currency": "EUR", "payee": "{{secret:payments_key}}"},
	} {
		_, err := httpDo(hs, eg, "charge", "k", args)
		var re *schemas.ReplyError
		if !errors.As(err, &re) || re.Code != schemas.CodeBadArguments || !strings.Contains(re.Message, "argument") {
			t.Fatalf("%v: %v", args, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.posts != 0 {
		t.Fatalf("%d requests reached the provider", p.posts)
	}
}

// A wrong key is the provider's refusal, reported without the key.
func TestHTTPBackendWrongKey(t *testing.T) {
	hs, p, eg, _ := httpWorker(t, "sk_right")
	p.mu.Lock()
	p.key = "sk_other"
	p.mu.Unlock()
	_, err := httpDo(hs, eg, "charge", "k", map[string]any{"amount": 1, "currency": "EUR", "payee": "acct_1"})
	if err == nil || !strings.Contains(err.Error(), "401 (invalid_api_key)") || strings.Contains(err.Error(), "sk_right") {
		t.Fatalf("got %v", err)
	}
}

func TestHTTPConfig(t *testing.T) {
	m, err := capabilities.Load("builtin:payment")
	if err != nil {
		t.Fatal(err)
	}
	m, _ = m.WithGrants(capabilities.Grants{Net: []string{"api.payments.example:443"}})
	for _, tc := range []struct{ name, cfg, want string }{
		{"ok", `{"backend": "http", "base_url": "https://api.payments.example", "api_key": "{{secret:payments_key}}"}`, ""},
		{"unknown backend", `{"backend": "stripe"}`, "backend must be ledger or http"},
		{"no base_url", `{"backend": "http"}`, "base_url must be"},
		{"literal key", `{"backend": "http", "base_url": "https://api.payments.example", "api_key": "sk_live_123"}`, "must be a placeholder"},
		{"not granted", `{"backend": "http", "base_url": "https://api.payments.example:8443"}`, "api.payments.example:8443 is not granted"},
		{"ledger keys", `{"backend": "http", "base_url": "https://api.payments.example", "ledger": "x"}`, "are for backend: ledger"},
		{"http keys", `{"base_url": "https://api.payments.example"}`, "are for backend: http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(worker.Env{State: t.TempDir(), Config: json.RawMessage(tc.cfg), Manifest: m})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "sk_live_123") {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
