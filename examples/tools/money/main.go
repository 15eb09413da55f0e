//go:build wasip1

// Command money is a Sluice WASM tool with two tools and no grants at all:
// money.split divides an amount into equal shares that add up to it to
// the cent, and money.total adds up an invoice's lines and its VAT. All
// arithmetic is in integer cents.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o money.wasm .
package main

import (
	"encoding/json"
	"math"

	"github.com/sluicehq/sluice/worker/wasm/guest"
)

type splitArgs struct {
	Amount   float64 `json:"amount"`
	Parts    int     `json:"parts"`
	Currency string  `json:"currency,omitempty"`
}

type splitOutput struct {
	Shares   []float64 `json:"shares"`
	Currency string    `json:"currency,omitempty"`
}

type line struct {
	Description string  `json:"description"`
	Quantity    float64 `json:"quantity"`
	UnitPrice   float64 `json:"unit_price"`
}

type totalArgs struct {
	Items    []line  `json:"items"`
	VATRate  float64 `json:"vat_rate"`
	Currency string  `json:"currency,omitempty"`
}

type totalOutput struct {
	Subtotal float64 `json:"subtotal"`
	VAT      float64 `json:"vat"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency,omitempty"`
}

func init() {
	guest.Serve(handle)
	guest.Warm(splitArgs{Amount: 1, Parts: 1, Currency: "EUR"}, splitOutput{Shares: []float64{1}, Currency: "EUR"},
		totalArgs{Items: []line{{Description: "d", Quantity: 1, UnitPrice: 1}}, VATRate: 1, Currency: "EUR"},
		totalOutput{Subtotal: 1, VAT: 1, Total: 1, Currency: "EUR"})
}

func main() {} // not run: the module is a reactor

// maxCents keeps every amount exactly representable.
const maxCents = 1 << 50

func cents(x float64) (int64, bool) {
	c := math.Round(x * 100)
	return int64(c), !math.IsNaN(c) && math.Abs(c) <= maxCents
}

func handle(tool string, raw json.RawMessage) (any, error) {
	switch tool {
	case "split":
		var a splitArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, guest.BadArguments("arguments: %v", err)
		}
		return split(a)
	case "total":
		var a totalArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, guest.BadArguments("arguments: %v", err)
		}
		return total(a)
	}
	return nil, guest.BadArguments("no tool %q", tool)
}

func split(a splitArgs) (any, error) {
	c, ok := cents(a.Amount)
	if !ok || a.Parts < 1 {
		return nil, guest.BadArguments("amount out of range or parts below 1")
	}
	sign := int64(1)
	if c < 0 {
		sign, c = -1, -c
	}
	each, rest := c/int64(a.Parts), c%int64(a.Parts)
	out := splitOutput{Shares: make([]float64, a.Parts), Currency: a.Currency}
	for i := range out.Shares {
		share := each
		if int64(i) < rest {
			share++ // the first shares carry the remaining cents
		}
		out.Shares[i] = float64(sign*share) / 100
	}
	return out, nil
}

func total(a totalArgs) (any, error) {
	var sub int64
	for _, l := range a.Items {
		c, ok := cents(l.Quantity * l.UnitPrice)
		if !ok {
			return nil, guest.BadArguments("a line is out of range")
		}
		sub += c
		if math.Abs(float64(sub)) > maxCents {
			return nil, guest.BadArguments("the subtotal is out of range")
		}
	}
	vat := int64(math.Round(float64(sub) * a.VATRate / 100))
	return totalOutput{Subtotal: float64(sub) / 100, VAT: float64(vat) / 100, Total: float64(sub+vat) / 100, Currency: a.Currency}, nil
}
