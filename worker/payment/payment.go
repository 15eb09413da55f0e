// Package payment is the built-in payment worker: tools charge and balance
// on a local, append-only ledger of JSON lines, one object per charge, or
// on a payment provider's HTTP API through the egress broker.
//
// Configuration (the worker's `config:` block, every key optional):
//
//	backend:         ledger (the default) or http
//	currency:        the account's ISO 4217 currency; default EUR
//	ledger:          path of the ledger file; default <state>/payment/ledger.jsonl
//	opening_balance: the balance before the first charge; default 0
//	base_url:        with backend http, the API's root, e.g. https://api.payments.example
//	api_key:         with backend http, "{{secret:NAME}}": the egress broker
//	                 fills the key in for the API's host; the worker never
//	                 holds it, so anything else is refused
//
// The HTTP backend speaks a small, Stripe-like protocol (see http.go): a
// form POST to <base_url>/v1/charges with an Idempotency-Key header, so
// that the provider charges a key once, and GET <base_url>/v1/balance.
//
// A charge happens once per idempotency key (the Sluice-Idempotency-Key of
// the call, stable across retries of one step): a call whose key is already
// in the ledger gets the charge it made before, and the same key with a
// different amount, currency or payee is refused. Each charge is appended as
// one line with a single write and synced to disk before the reply.
//
// Several replicas may run in separate processes on one ledger file. Every
// check-and-append holds an exclusive advisory lock on the file (flock(2))
// and first reads the lines that others appended since its last read, so a
// key is charged once across all of them. The lock is advisory: anything
// else that writes the file must take it too. Platforms without flock(2) are
// refused rather than run unlocked.
//
// A line that is not a valid charge record makes every call fail with the
// ledger's path and the line number until the file is repaired; the worker
// never rewrites the ledger.
package payment

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"regexp"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sluicehq/sluice/worker"
)

const defaultCurrency = "EUR"

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

type config struct {
	Backend        string  `json:"backend"`
	Ledger         string  `json:"ledger"`
	Currency       string  `json:"currency"`
	OpeningBalance float64 `json:"opening_balance"`
	BaseURL        string  `json:"base_url"`
	APIKey         string  `json:"api_key"`
}

// Backends.
const (
	backendLedger = "ledger"
	backendHTTP   = "http"
)

func loadConfig(env worker.Env) (config, error) {
	var cfg config
	if raw := bytes.TrimSpace(env.Config); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("payment config: %w (keys are: api_key, backend, base_url, currency, ledger, opening_balance)", err)
		}
	}
	switch cfg.Backend {
	case "", backendLedger:
		cfg.Backend = backendLedger
		if cfg.BaseURL != "" || cfg.APIKey != "" {
			return cfg, errors.New("payment config: base_url and api_key are for backend: http")
		}
	case backendHTTP:
		if cfg.Ledger != "" || cfg.OpeningBalance != 0 {
			return cfg, errors.New("payment config: ledger and opening_balance are for backend: ledger")
		}
	default:
		return cfg, errors.New("payment config: backend must be ledger or http")
	}
	if cfg.Currency == "" {
		cfg.Currency = defaultCurrency
	}
	if !currencyRE.MatchString(cfg.Currency) {
		return cfg, errors.New("payment config: currency must be a three-letter ISO 4217 code in capitals")
	}
	if math.IsInf(cfg.OpeningBalance, 0) || math.IsNaN(cfg.OpeningBalance) {
		return cfg, errors.New("payment config: opening_balance must be a finite number")
	}
	if cfg.Backend == backendHTTP {
		return cfg, checkHTTPConfig(cfg, env)
	}
	if cfg.Ledger == "" {
		if env.State == "" {
			return cfg, errors.New("payment config: no ledger path and no state directory")
		}
		cfg.Ledger = filepath.Join(env.State, "payment", "ledger.jsonl")
	}
	abs, err := filepath.Abs(cfg.Ledger)
	if err != nil {
		return cfg, fmt.Errorf("payment config: ledger: %w", err)
	}
	cfg.Ledger = abs
	return cfg, nil
}

// New returns the payment worker's handlers. It opens (creating it if
// needed) and reads the ledger; a ledger that cannot be opened is an error,
// a corrupt one is reported by every call.
func New(env worker.Env) (map[string]worker.Handler, error) {
	cfg, err := loadConfig(env)
	if err != nil {
		return nil, err
	}
	if cfg.Backend == backendHTTP {
		api, err := newHTTPAPI(cfg)
		if err != nil {
			return nil, err
		}
		w := &payments{cfg: cfg, api: api}
		return map[string]worker.Handler{"charge": w.charge, "balance": w.balance}, nil
	}
	l, err := openLedger(cfg.Ledger, cfg.Currency)
	if err != nil {
		return nil, err
	}
	if err := l.read(); err != nil {
		log := env.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.Error("payment ledger is unusable until repaired", "err", err)
	}
	w := &payments{cfg: cfg, ledger: l, opening: decimal(cfg.OpeningBalance)}
	return map[string]worker.Handler{"charge": w.charge, "balance": w.balance}, nil
}

var _ worker.Builtin = New

type payments struct {
	cfg     config
	ledger  *ledger
	opening decimalValue
	// api is the HTTP backend; nil with the ledger.
	api *httpAPI
}

type chargeArgs struct {
	Amount   *float64 `json:"amount"`
	Currency string   `json:"currency"`
	Payee    string   `json:"payee"`
	Memo     string   `json:"memo"`
}

type chargeOutput struct {
	ChargeID string `json:"charge_id"`
	Status   string `json:"status"`
}

const statusSucceeded = "succeeded"

func (p *payments) charge(ctx context.Context, call *worker.Call) (any, error) {
	var args chargeArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	switch {
	case args.Amount == nil:
		return nil, worker.BadArguments("argument amount is required")
	case math.IsNaN(*args.Amount) || math.IsInf(*args.Amount, 0) || *args.Amount <= 0:
		return nil, worker.BadArguments("argument amount must be a finite number greater than 0")
	case args.Currency != p.cfg.Currency:
		return nil, worker.BadArguments("argument currency must be %s, the currency of this account", p.cfg.Currency)
	case args.Payee == "":
		return nil, worker.BadArguments("argument payee is required")
	case call.IdempotencyKey == "":
		return nil, worker.Failed("the call has no idempotency key; a charge needs one")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.api != nil {
		return p.api.charge(ctx, call, args)
	}
	rec := record{
		Amount:         *args.Amount,
		Currency:       args.Currency,
		Payee:          args.Payee,
		Memo:           args.Memo,
		IdempotencyKey: call.IdempotencyKey,
		RunID:          call.Run,
		Step:           call.Step,
	}
	got, err := p.ledger.charge(rec, func() (string, string) {
		return "ch_" + ulid.MustNew(ulid.Now(), rand.Reader).String(),
			time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	})
	if err != nil {
		return nil, worker.Failed("%v", err)
	}
	if got.Amount != rec.Amount || got.Currency != rec.Currency || got.Payee != rec.Payee {
		return nil, worker.Failed("idempotency key reused with different arguments")
	}
	return chargeOutput{ChargeID: got.ChargeID, Status: statusSucceeded}, nil
}

type balanceOutput struct {
	Balance  float64 `json:"balance"`
	Currency string  `json:"currency"`
}

func (p *payments) balance(ctx context.Context, call *worker.Call) (any, error) {
	var args struct{}
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if p.api != nil {
		return p.api.balance(ctx, call)
	}
	spent, err := p.ledger.spent()
	if err != nil {
		return nil, worker.Failed("%v", err)
	}
	return balanceOutput{Balance: p.opening.sub(spent).float(), Currency: p.cfg.Currency}, nil
}

// decodeArgs unmarshals arguments into v. Its errors name the field that
// failed, never the value.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return worker.BadArguments("argument %s: expected %s", te.Field, te.Type)
		}
		return worker.BadArguments("arguments are not a JSON object of the expected shape")
	}
	return nil
}
