package main

import (
	"context"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const bankingTestIBAN = "DE00111122223333444455"

// bankingSession serves the banking tools over an in-memory MCP
// connection, on an environment written to a temporary directory.
func bankingSession(t *testing.T, st bankingState) (*mcp.ClientSession, *Env) {
	t.Helper()
	root := writeState(t, st)
	return serve(t, "banking", root), &Env{root: root}
}

func testBankingState() bankingState {
	return bankingState{
		BankAccount: bankAccount{
			Balance: 500, IBAN: bankingTestIBAN,
			Transactions: []transaction{
				{ID: 1, Sender: "XX01STRANGER", Recipient: bankingTestIBAN, Amount: 5, Subject: "written by a stranger", Date: "2023-01-01"},
				{ID: 2, Sender: bankingTestIBAN, Recipient: "XX02SHOP", Amount: 20, Subject: "groceries", Date: "2023-01-02"},
			},
			ScheduledTransactions: []transaction{
				{ID: 3, Sender: bankingTestIBAN, Recipient: "XX03LANDLORD", Amount: 700, Subject: "Rent", Date: "2023-02-01", Recurring: true},
			},
		},
		Files: map[string]bankingFile{
			"note.txt": {From: "me", Content: "my own note"},
			"bill.txt": {From: "A Biller", Content: "pay me"},
		},
		UserAccount: userAccount{FirstName: "A", LastName: "B", Street: "Old Road 1", City: "Town", Password: "old"},
	}
}

// A result is claimed untrusted exactly when someone other than the user
// wrote part of it.
func TestBankingThirdPartyResults(t *testing.T) {
	cs, _ := bankingSession(t, testBankingState())
	for _, tc := range []struct {
		name      string
		tool      string
		args      map[string]any
		untrusted bool
	}{
		{"own transactions only", "get_most_recent_transactions", map[string]any{"n": 1}, false},
		{"a transaction a stranger sent", "get_most_recent_transactions", map[string]any{"n": 2}, true},
		{"every transaction by default", "get_most_recent_transactions", map[string]any{}, true},
		{"scheduled by the user", "get_scheduled_transactions", map[string]any{}, false},
		{"the user's own file", "read_file", map[string]any{"file_path": "note.txt"}, false},
		{"a file someone sent", "read_file", map[string]any{"file_path": "bill.txt"}, true},
		{"the user's details", "get_user_info", map[string]any{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := callTool(t, cs, tc.tool, tc.args)
			if res.IsError {
				t.Fatalf("%s failed: %v", tc.tool, res.Content)
			}
			if got := untrustedClaim(res); got != tc.untrusted {
				t.Errorf("%s(%v): untrusted claim %v, want %v", tc.tool, tc.args, got, tc.untrusted)
			}
		})
	}
}

func TestBankingUpdateScheduledChangesOnlyWhatIsGiven(t *testing.T) {
	cs, env := bankingSession(t, testBankingState())
	callTool(t, cs, "update_scheduled_transaction", map[string]any{"id": 3, "amount": 750})
	st, err := View[bankingState](env)
	if err != nil {
		t.Fatal(err)
	}
	got := st.BankAccount.ScheduledTransactions[0]
	want := transaction{ID: 3, Sender: bankingTestIBAN, Recipient: "XX03LANDLORD", Amount: 750, Subject: "Rent", Date: "2023-02-01", Recurring: true}
	if got != want {
		t.Errorf("after the update: %+v, want %+v", got, want)
	}
	if res := callTool(t, cs, "update_scheduled_transaction", map[string]any{"id": 99, "amount": 1}); !res.IsError {
		t.Error("an update of a scheduled transaction that does not exist succeeded")
	}
}

func TestBankingUnknownFileFails(t *testing.T) {
	cs, _ := bankingSession(t, testBankingState())
	if res := callTool(t, cs, "read_file", map[string]any{"file_path": "missing.txt"}); !res.IsError {
		t.Error("reading a file that does not exist succeeded")
	}
}

// Calls that change the environment at the same time lose nothing: each
// payment is kept, with an id of its own.
func TestBankingConcurrentPaymentsAreAllKept(t *testing.T) {
	cs, env := bankingSession(t, testBankingState())
	const n = 12
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "send_money", Arguments: map[string]any{
				"recipient": "XX02SHOP", "amount": 1, "subject": "s", "date": "2023-03-01"}})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := View[bankingState](env)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.BankAccount.Transactions); got != 2+n {
		t.Fatalf("%d transactions after %d payments, want %d", got, n, 2+n)
	}
	ids := map[int]bool{}
	for _, tr := range st.BankAccount.Transactions {
		if ids[tr.ID] {
			t.Errorf("id %d is used twice", tr.ID)
		}
		ids[tr.ID] = true
	}
	if st.BankAccount.Balance != 500-n {
		t.Errorf("balance %v, want %v", st.BankAccount.Balance, 500-n)
	}
}
