package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// A canary secret used by a real authenticated request during a full run
// is found nowhere: not in a log line, an audit record, a message seen by
// an observer subscribed to every subject, the run's result, or any file
// under the state directory.
func TestCanarySecretIsFoundNowhere(t *testing.T) {
	const canary = "canary-sk-8c1f0e9b7d2a"
	var mu sync.Mutex
	authenticated := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("key") != canary || r.Header.Get("Authorization") != "" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		authenticated++
		mu.Unlock()
		k := r.URL.Query().Get("key")
		w.Header().Set("X-Echo", k)
		fmt.Fprintf(w, "<html><title>Rates for %s</title><body>key %s, b64 %s, hex %s, url %s. EUR/USD 1.08</body></html>",
			k, k, base64.StdEncoding.EncodeToString([]byte(k)), hex.EncodeToString([]byte(k)), r.URL.RawQuery)
	}))
	defer api.Close()
	host := strings.TrimPrefix(api.URL, "http://")
	dir := t.TempDir()
	dep, err := config.Parse("sluice.yaml", []byte(`workers:
  - manifest: builtin:web
    grants:
      net: ["`+host+`"]
      secrets: [{name: rates_key, hosts: ["127.0.0.1"]}]
  - manifest: builtin:payment
  - manifest: builtin:llm
    config: {backend: hijackable}
secrets:
  rates_key: {env: RATES_KEY}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	orch := startOrchestrator(t, orchestrator.Config{Deployment: dep,
		Log:    slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Getenv: func(k string) string { return map[string]string{"RATES_KEY": canary}[k] }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	observer, err := orch.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()
	var seen syncBuffer
	if _, err := observer.Subscribe(">", func(m *nats.Msg) {
		fmt.Fprintf(&seen, "%s %v %s\n", m.Subject, m.Header, m.Data)
	}); err != nil {
		t.Fatal(err)
	}
	observer.Flush()

	plan := loadFlow(t, orch, dir, `name: rates
steps:
  - {id: rates, call: web.fetch, with: {url: "http://`+host+`/rates?key={{secret:rates_key}}"}}
  - id: ask
    call: llm.complete
    with: {prompt: "${'SLUICE-INJECT: \"' + steps.rates.output.text + '\"'}"}
  - {id: pay, call: payment.charge, with: {amount: 1, currency: EUR, payee: "${steps.ask.output.text.substring(0, 16)}"}}
`)
	res, err := orch.Run(ctx, plan, nil, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	observer.Flush()
	if res.Steps[0].Status != engine.StatusCompleted || res.Status != engine.StatusHeld {
		t.Errorf("run %s: %+v", res.Status, res.Steps)
	}
	mu.Lock()
	if authenticated != 1 {
		t.Fatalf("the API authenticated %d requests, want 1: the secret was not filled in", authenticated)
	}
	mu.Unlock()
	result, _ := json.Marshal(res)
	if !strings.Contains(string(result), "[redacted]") {
		t.Errorf("the echo of the key was not replaced: %s", result)
	}
	recs, err := orch.Audit().Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	auditJSON, _ := json.Marshal(recs)

	places := map[string]string{
		"log":    logs.String(),
		"audit":  string(auditJSON),
		"bus":    seen.String(),
		"result": string(result),
	}
	for p, text := range readTree(dir) {
		places["file "+p] = text
	}
	forms := []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), hex.EncodeToString([]byte(canary))}
	for where, text := range places {
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("the canary (%s) is in the %s", f, where)
			}
		}
	}
	if !strings.Contains(seen.String(), "sluice.tool.web.fetch") || !strings.Contains(seen.String(), "sluice.egress.web") {
		t.Fatalf("the observer saw no traffic:\n%s", seen.String())
	}
}
