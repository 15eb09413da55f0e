package approval

import (
	"strings"
	"testing"
	"time"
)

// An endorsement covers exactly the values endorsed, byte for byte, in
// its run, for its tools, and not the call it was given with.
func TestEndorsementCoversOnlyItsRunToolAndValue(t *testing.T) {
	zero := 0
	a := &Approval{ID: "A1", RunID: "R1", Step: "pay", Index: &zero, Tool: "t.pay",
		Args: map[string]any{"payee": "acct_hotel_1", "amount": 10.0}}
	e, err := Endorse("E1", a, EndorseScope{Args: []string{"payee"}}, "ana", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e.Call != "R1/pay/0" || len(e.Tools) != 1 || e.Tools[0] != "t.pay" {
		t.Fatalf("endorsement %+v", e)
	}
	if !e.Covers("R1", "R1/pay/1", "t.pay", "acct_hotel_1") {
		t.Fatal("the endorsed value in its run, for its tool, is not covered")
	}
	for _, c := range []struct {
		name, run, idem, tool string
		v                     any
	}{
		{"a value one byte longer", "R1", "R1/pay/1", "t.pay", "acct_hotel_1 "},
		{"a value in another case", "R1", "R1/pay/1", "t.pay", "ACCT_hotel_1"},
		{"a confusable value", "R1", "R1/pay/1", "t.pay", "acct_h\u043etel_1"},
		{"the value as a list", "R1", "R1/pay/1", "t.pay", []any{"acct_hotel_1"}},
		{"an argument not endorsed", "R1", "R1/pay/1", "t.pay", 10.0},
		{"another tool", "R1", "R1/pay/1", "t.spend", "acct_hotel_1"},
		{"another run", "R2", "R2/pay/1", "t.pay", "acct_hotel_1"},
		{"the call it was given with", "R1", "R1/pay/0", "t.pay", "acct_hotel_1"},
	} {
		if e.Covers(c.run, c.idem, c.tool, c.v) {
			t.Errorf("%s is covered", c.name)
		}
	}
	// Other tools, when named, in place of the held call's.
	e, err = Endorse("E2", a, EndorseScope{Args: []string{"payee"}, Tools: []string{"t.refund", "t.pay", "t.refund"}}, "ana", time.Now())
	if err != nil || strings.Join(e.Tools, ",") != "t.pay,t.refund" || !e.Covers("R1", "R1/x", "t.refund", "acct_hotel_1") {
		t.Fatalf("endorsement for two tools: %+v %v", e, err)
	}
	for _, sc := range []EndorseScope{{}, {Args: []string{"iban"}}, {Args: []string{"payee"}, Tools: []string{" "}}} {
		if _, err := Endorse("E3", a, sc, "ana", time.Now()); err == nil {
			t.Errorf("scope %+v accepted", sc)
		}
	}
}
