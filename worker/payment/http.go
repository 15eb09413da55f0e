package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// The HTTP backend's protocol, with the key in a bearer token:
//
//	POST <base_url>/v1/charges
//	Authorization: Bearer <key>
//	Idempotency-Key: <the call's idempotency key>
//	Content-Type: application/x-www-form-urlencoded
//
//	amount=42.5&currency=EUR&payee=acct_hotel_1&memo=…
//
// amount is in major units, as the charge gives it. A 2xx answer is
// {"id": "ch_…", "status": "succeeded" | "pending" | "failed"}; a provider
// that has seen the key answers with the charge it made for it. Any other
// status is an error, {"error": {"code": "…", "message": "…"}}.
//
//	GET <base_url>/v1/balance  →  {"balance": 1234.5, "currency": "EUR"}
type httpAPI struct {
	base     string // without a trailing slash
	key      string // a placeholder, or ""
	currency string
}

var placeholderRE = regexp.MustCompile(`^\{\{secret:[A-Za-z0-9_.-]+\}\}$`)

var defaultPorts = map[string]string{"http": "80", "https": "443"}

func checkHTTPConfig(cfg config, env worker.Env) error {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || defaultPorts[u.Scheme] == "" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("payment config: base_url must be an http or https URL such as https://api.payments.example")
	}
	if cfg.APIKey != "" && !placeholderRE.MatchString(cfg.APIKey) {
		return errors.New(`payment config: api_key must be a placeholder such as "{{secret:payments_key}}": the broker fills it in, a worker never holds a secret`)
	}
	port := u.Port()
	if port == "" {
		port = defaultPorts[u.Scheme]
	}
	hostport := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	if env.Manifest != nil && !slices.Contains(env.Manifest.Grants.Net, hostport) {
		return fmt.Errorf("payment config: base_url: %s is not granted; add grants: {net: [%q]} to the payment worker", hostport, hostport)
	}
	return nil
}

func newHTTPAPI(cfg config) (*httpAPI, error) {
	return &httpAPI{base: strings.TrimRight(cfg.BaseURL, "/"), key: cfg.APIKey, currency: cfg.Currency}, nil
}

func (a *httpAPI) headers(key string) map[string]string {
	h := map[string]string{"Accept": "application/json"}
	if a.key != "" {
		h["Authorization"] = "Bearer " + a.key
	}
	if key != "" {
		h["Idempotency-Key"] = key
		h["Content-Type"] = "application/x-www-form-urlencoded"
	}
	return h
}

func (a *httpAPI) charge(ctx context.Context, call *worker.Call, args chargeArgs) (any, error) {
	for name, v := range map[string]string{"payee": args.Payee, "memo": args.Memo} {
		// The broker fills placeholders in for the provider's host: an
		// argument must not be able to ask for the key.
		if strings.Contains(v, "{{") {
			return nil, worker.BadArguments("argument %s may not contain \"{{\"", name)
		}
	}
	form := url.Values{
		"amount":   {strconv.FormatFloat(*args.Amount, 'f', -1, 64)},
		"currency": {args.Currency},
		"payee":    {args.Payee},
	}
	if args.Memo != "" {
		form.Set("memo", args.Memo)
	}
	resp, err := call.HTTP(ctx, schemas.EgressRequest{Method: "POST", URL: a.base + "/v1/charges",
		Headers: a.headers(call.IdempotencyKey), Body: []byte(form.Encode())})
	if err != nil {
		return nil, egressError(err)
	}
	if err := statusError(resp); err != nil {
		return nil, err
	}
	var out struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(resp.Body, &out) != nil || out.ID == "" {
		return nil, worker.Failed("payment API: the answer is not a charge (want {\"id\", \"status\"})")
	}
	switch out.Status {
	case statusSucceeded, "pending", "failed":
	default:
		return nil, worker.Failed("payment API: unknown charge status %q", clip(out.Status, 32))
	}
	call.Log.Info("charge made through the payment API", "charge_id", out.ID, "status", out.Status)
	return chargeOutput{ChargeID: out.ID, Status: out.Status}, nil
}

func (a *httpAPI) balance(ctx context.Context, call *worker.Call) (any, error) {
	resp, err := call.HTTP(ctx, schemas.EgressRequest{Method: "GET", URL: a.base + "/v1/balance", Headers: a.headers("")})
	if err != nil {
		return nil, egressError(err)
	}
	if err := statusError(resp); err != nil {
		return nil, err
	}
	var out struct {
		Balance  *float64 `json:"balance"`
		Currency string   `json:"currency"`
	}
	if json.Unmarshal(resp.Body, &out) != nil || out.Balance == nil || math.IsNaN(*out.Balance) || math.IsInf(*out.Balance, 0) {
		return nil, worker.Failed("payment API: the answer is not a balance (want {\"balance\", \"currency\"})")
	}
	if out.Currency == "" {
		out.Currency = a.currency
	}
	return balanceOutput{Balance: *out.Balance, Currency: out.Currency}, nil
}

func egressError(err error) error {
	var re *schemas.ReplyError
	if errors.As(err, &re) {
		return worker.Failed("payment API: %s", re.Message)
	}
	return worker.Failed("payment API: %v", err)
}

// statusError turns an answer other than 2xx into an error naming the
// status and the provider's error code, not its prose.
func statusError(resp *schemas.EgressResponse) error {
	if resp.Status >= 200 && resp.Status < 300 {
		return nil
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.Unmarshal(resp.Body, &e)
	code := e.Error.Code
	if code == "" {
		code = e.Error.Type
	}
	if code != "" && len(code) <= 64 && !strings.ContainsFunc(code, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return worker.Failed("payment API answered %d (%s)", resp.Status, code)
	}
	return worker.Failed("payment API answered %d", resp.Status)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
