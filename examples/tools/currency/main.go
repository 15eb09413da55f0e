//go:build wasip1

// Command currency is a Sluice WASM tool: currency.convert converts an
// amount with the day's reference rate from a Frankfurter-style API
// (https://api.frankfurter.app by default), fetched through the host's
// HTTP function, so the egress broker checks the destination against the
// worker's grants. Only the two currency codes leave the machine; the
// amount is converted here.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o currency.wasm .
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

const defaultAPI = "https://api.frankfurter.app"

type convertArgs struct {
	Amount float64 `json:"amount"`
	From   string  `json:"from"`
	To     string  `json:"to"`
	// API is the base URL of the rates API; the worker's net grant must
	// name its host and port.
	API string `json:"api,omitempty"`
}

type convertOutput struct {
	Amount    float64 `json:"amount"`
	From      string  `json:"from"`
	To        string  `json:"to"`
	Rate      float64 `json:"rate"`
	Converted float64 `json:"converted"`
	Date      string  `json:"date"`
}

// rates is the API's answer to /latest?from=X&to=Y.
type rates struct {
	Base  string             `json:"base"`
	Date  string             `json:"date"`
	Rates map[string]float64 `json:"rates"`
}

func init() {
	guest.Serve(handle)
	guest.Warm(convertArgs{Amount: 1, From: "EUR", To: "USD", API: defaultAPI},
		convertOutput{Amount: 1, From: "EUR", To: "USD", Rate: 1, Converted: 1, Date: "2024-01-01"},
		rates{Base: "EUR", Date: "2024-01-01", Rates: map[string]float64{"USD": 1}})
}

func main() {} // not run: the module is a reactor

var code = regexp.MustCompile(`^[A-Z]{3}$`)

func handle(tool string, raw json.RawMessage) (any, error) {
	if tool != "convert" {
		return nil, guest.BadArguments("no tool %q", tool)
	}
	var args convertArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, guest.BadArguments("arguments: %v", err)
	}
	args.From, args.To = strings.ToUpper(args.From), strings.ToUpper(args.To)
	if !code.MatchString(args.From) || !code.MatchString(args.To) {
		return nil, guest.BadArguments("from and to must be ISO 4217 codes such as EUR")
	}
	out := convertOutput{Amount: args.Amount, From: args.From, To: args.To, Rate: 1, Converted: args.Amount}
	if args.From == args.To {
		return out, nil
	}
	api := args.API
	if api == "" {
		api = defaultAPI
	}
	u, err := url.Parse(strings.TrimRight(api, "/") + "/latest")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, guest.BadArguments("api must be an http or https URL")
	}
	u.RawQuery = url.Values{"from": {args.From}, "to": {args.To}}.Encode()
	resp, err := guest.Get(u.String(), map[string]string{"Accept": "application/json"})
	if err != nil {
		return nil, err
	}
	if resp.Status != 200 {
		return nil, fmt.Errorf("the rates API answered %d", resp.Status)
	}
	var r rates
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("the rates API's answer is not JSON")
	}
	rate, ok := r.Rates[args.To]
	if !ok || rate <= 0 || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("the rates API has no rate from %s to %s", args.From, args.To)
	}
	out.Rate, out.Date = rate, r.Date
	out.Converted = math.Round(args.Amount*rate*100) / 100
	return out, nil
}
