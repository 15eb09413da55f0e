package approval

import (
	"strings"
	"testing"
	"time"
)

func heldPayment() *Approval {
	return &Approval{ID: "A1", Flow: "pay-invoice", Tool: "payment.charge",
		Args: map[string]any{"payee": "acct_hotel_1", "amount": 120.0, "memo": "room"}}
}

// A remembered answer lets through only what its scope names: the pinned
// arguments exactly, in its flow, within its count and sum per day, until
// its date. Each attack picks a value just outside the scope.
func TestRememberedAdmitsOnlyItsScope(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	scope := Scope{Pin: []string{"payee"}, MaxPerDay: 3, SumArg: "amount", MaxSumPerDay: 300}
	call := func(payee string, amount float64) map[string]any {
		return map[string]any{"payee": payee, "amount": amount, "memo": "anything"}
	}
	cases := []struct {
		name  string
		flow  string
		calls []map[string]any
		at    time.Time
		want  []bool
	}{
		{"control: the same payee, within the caps", "pay-invoice", []map[string]any{call("acct_hotel_1", 100), call("acct_hotel_1", 80)}, now, []bool{true, true}},
		{"a near miss", "pay-invoice", []map[string]any{call("acct_hotel_1 ", 10), call("ACCT_HOTEL_1", 10), call("acct_hotel_l", 10)}, now, []bool{false, false, false}},
		{"a confusable name", "pay-invoice", []map[string]any{call("acct_h\u043etel_1", 10)}, now, []bool{false}},
		{"a split amount", "pay-invoice", []map[string]any{call("acct_hotel_1", 100), call("acct_hotel_1", 90)}, now, []bool{true, false}},
		{"one call too many", "pay-invoice", []map[string]any{call("acct_hotel_1", 1), call("acct_hotel_1", 1), call("acct_hotel_1", 1)}, now, []bool{true, true, false}},
		{"another flow", "other-flow", []map[string]any{call("acct_hotel_1", 10)}, now, []bool{false}},
		{"a negative amount", "pay-invoice", []map[string]any{call("acct_hotel_1", -500), call("acct_hotel_1", 180)}, now, []bool{false, true}},
		{"after its date", "pay-invoice", []map[string]any{call("acct_hotel_1", 10)}, now.Add(DefaultRemember), []bool{false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Remember("R1", heldPayment(), scope, "alice", now)
			if err != nil {
				t.Fatal(err)
			}
			for i, args := range c.calls {
				if ok, why := r.Admit("payment.charge", c.flow, args, c.at); ok != c.want[i] {
					t.Errorf("call %d (%v): admitted %v (%s), want %v", i, args, ok, why, c.want[i])
				}
			}
		})
	}
}

// A new day starts a new count; a revoked answer lets nothing through.
func TestRememberedDaysAndRevocation(t *testing.T) {
	now := time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC)
	r, err := Remember("R1", heldPayment(), Scope{Pin: []string{"payee"}, MaxPerDay: 1}, "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]any{"payee": "acct_hotel_1", "amount": 5.0}
	// The approved call was the day's one call.
	if ok, _ := r.Admit("payment.charge", "pay-invoice", args, now.Add(time.Minute)); ok {
		t.Fatal("second call of the day admitted")
	}
	if ok, _ := r.Admit("payment.charge", "pay-invoice", args, now.Add(2*time.Hour)); !ok {
		t.Fatal("first call of the next day refused")
	}
	revoked := now
	r.Revoked = &revoked
	if ok, why := r.Admit("payment.charge", "pay-invoice", args, now.Add(48*time.Hour)); ok || why != "revoked" {
		t.Fatalf("revoked answer: %v %s", ok, why)
	}
}

// A scope must pin an argument the held call has, and bound what it sums.
func TestRememberRefusesAShapelessScope(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		scope Scope
		want  string
	}{
		{Scope{}, "at least one argument"},
		{Scope{Pin: []string{"iban"}}, `no argument "iban"`},
		{Scope{Pin: []string{"payee"}, SumArg: "amount"}, "names its argument and its bound"},
		{Scope{Pin: []string{"payee"}, SumArg: "memo", MaxSumPerDay: 10}, "not a number"},
		{Scope{Pin: []string{"payee"}, Until: now.Add(-time.Hour)}, "after now"},
		{Scope{Pin: []string{"payee"}, Until: now.Add(2 * MaxRemember)}, "within"},
		{Scope{Pin: []string{"payee"}, SumArg: "amount", MaxSumPerDay: 100}, "already outside"},
	} {
		if _, err := Remember("R", heldPayment(), c.scope, "alice", now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.scope, err, c.want)
		}
	}
}
