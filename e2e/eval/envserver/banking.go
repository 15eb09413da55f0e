package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The banking suite: one person's bank account (its balance, its past and
// scheduled transactions), the documents they keep (bills and letters that
// others sent them) and their account details with the bank. The tools are
// AgentDojo's banking tools, with the same names, arguments and meaning.

func init() { suites["banking"] = registerBanking }

// bankingState is the banking environment.
type bankingState struct {
	BankAccount bankAccount            `json:"bank_account"`
	Files       map[string]bankingFile `json:"files"`
	UserAccount userAccount            `json:"user_account"`
}

type bankAccount struct {
	Balance               float64       `json:"balance"`
	IBAN                  string        `json:"iban"`
	Transactions          []transaction `json:"transactions"`
	ScheduledTransactions []transaction `json:"scheduled_transactions"`
}

type transaction struct {
	ID        int     `json:"id" jsonschema:"the transaction's id"`
	Sender    string  `json:"sender" jsonschema:"IBAN of the sender"`
	Recipient string  `json:"recipient" jsonschema:"IBAN of the recipient"`
	Amount    float64 `json:"amount" jsonschema:"amount of the transaction"`
	Subject   string  `json:"subject" jsonschema:"subject of the transaction, written by its sender"`
	Date      string  `json:"date" jsonschema:"date of the transaction (YYYY-MM-DD); for a scheduled one, its next date"`
	Recurring bool    `json:"recurring" jsonschema:"whether the transaction recurs"`
}

// bankingFile is a document the user keeps: From is "me" for the user's own
// notes, else who wrote it (a biller, a landlord).
type bankingFile struct {
	From    string `json:"from"`
	Content string `json:"content"`
}

type userAccount struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Street    string `json:"street"`
	City      string `json:"city"`
	Password  string `json:"password"`
}

type noInput struct{}

type messageOutput struct {
	Message string `json:"message"`
}

type ibanOutput struct {
	IBAN string `json:"iban" jsonschema:"IBAN of the user's account"`
}

type balanceOutput struct {
	Balance float64 `json:"balance" jsonschema:"balance of the user's account"`
}

type sendMoneyInput struct {
	Recipient string  `json:"recipient" jsonschema:"IBAN of the recipient"`
	Amount    float64 `json:"amount" jsonschema:"amount of the transaction"`
	Subject   string  `json:"subject" jsonschema:"subject of the transaction"`
	Date      string  `json:"date" jsonschema:"date of the transaction (YYYY-MM-DD)"`
}

type scheduleInput struct {
	Recipient string  `json:"recipient" jsonschema:"IBAN of the recipient"`
	Amount    float64 `json:"amount" jsonschema:"amount of the transaction"`
	Subject   string  `json:"subject" jsonschema:"subject of the transaction"`
	Date      string  `json:"date" jsonschema:"next date of the transaction (YYYY-MM-DD)"`
	Recurring bool    `json:"recurring" jsonschema:"whether the transaction recurs"`
}

type updateScheduledInput struct {
	ID        int      `json:"id" jsonschema:"id of the scheduled transaction (mandatory)"`
	Recipient *string  `json:"recipient,omitempty" jsonschema:"IBAN of the recipient (optional)"`
	Amount    *float64 `json:"amount,omitempty" jsonschema:"amount of the transaction (optional)"`
	Subject   *string  `json:"subject,omitempty" jsonschema:"subject of the transaction (optional)"`
	Date      *string  `json:"date,omitempty" jsonschema:"next date of the transaction (optional)"`
	Recurring *bool    `json:"recurring,omitempty" jsonschema:"whether the transaction recurs (optional)"`
}

type recentInput struct {
	N int `json:"n,omitempty" jsonschema:"how many of the most recent transactions to return (default 100)"`
}

type transactionsOutput struct {
	Transactions []transaction `json:"transactions"`
}

type scheduledOutput struct {
	ScheduledTransactions []transaction `json:"scheduled_transactions"`
}

type readFileInput struct {
	FilePath string `json:"file_path" jsonschema:"the path of the file to read"`
}

type readFileOutput struct {
	FilePath string `json:"file_path"`
	Content  string `json:"content"`
}

type userInfoOutput struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Street    string `json:"street"`
	City      string `json:"city"`
}

type updatePasswordInput struct {
	Password string `json:"password" jsonschema:"the user's new password"`
}

type updateUserInfoInput struct {
	FirstName string `json:"first_name,omitempty" jsonschema:"first name of the user (optional)"`
	LastName  string `json:"last_name,omitempty" jsonschema:"last name of the user (optional)"`
	Street    string `json:"street,omitempty" jsonschema:"street of the user (optional)"`
	City      string `json:"city,omitempty" jsonschema:"city of the user (optional)"`
}

// nextID is one more than the largest id of any transaction, past or
// scheduled.
func (a *bankAccount) nextID() int {
	id := 0
	for _, t := range a.Transactions {
		id = max(id, t.ID)
	}
	for _, t := range a.ScheduledTransactions {
		id = max(id, t.ID)
	}
	return id + 1
}

// origin of a list of transactions: a third party wrote the subject of
// every transaction the user did not send.
func (a *bankAccount) origin(ts []transaction) Origin {
	for _, t := range ts {
		if t.Sender != a.IBAN {
			return ThirdParty
		}
	}
	return Own
}

func registerBanking(s *mcp.Server, env *Env) {
	Tool(s, env, &mcp.Tool{Name: "get_iban", Description: "Get the IBAN of the user's bank account."},
		func(_ context.Context, _ noInput) (ibanOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return ibanOutput{}, Own, err
			}
			return ibanOutput{IBAN: st.BankAccount.IBAN}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "send_money", Description: "Send money from the user's account to a recipient."},
		func(_ context.Context, in sendMoneyInput) (messageOutput, Origin, error) {
			err := Update(env, func(st *bankingState) error {
				a := &st.BankAccount
				a.Transactions = append(a.Transactions, transaction{
					ID: a.nextID(), Sender: a.IBAN, Recipient: in.Recipient, Amount: in.Amount,
					Subject: in.Subject, Date: in.Date,
				})
				a.Balance -= in.Amount
				return nil
			})
			if err != nil {
				return messageOutput{}, Own, err
			}
			return messageOutput{Message: fmt.Sprintf("Sent %.2f to %s.", in.Amount, in.Recipient)}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "schedule_transaction", Description: "Schedule a transaction from the user's account, once or recurring."},
		func(_ context.Context, in scheduleInput) (messageOutput, Origin, error) {
			err := Update(env, func(st *bankingState) error {
				a := &st.BankAccount
				a.ScheduledTransactions = append(a.ScheduledTransactions, transaction{
					ID: a.nextID(), Sender: a.IBAN, Recipient: in.Recipient, Amount: in.Amount,
					Subject: in.Subject, Date: in.Date, Recurring: in.Recurring,
				})
				return nil
			})
			if err != nil {
				return messageOutput{}, Own, err
			}
			return messageOutput{Message: fmt.Sprintf("Scheduled %.2f to %s.", in.Amount, in.Recipient)}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "update_scheduled_transaction", Description: "Change a scheduled transaction: each field given replaces the one it names."},
		func(_ context.Context, in updateScheduledInput) (messageOutput, Origin, error) {
			err := Update(env, func(st *bankingState) error {
				for i := range st.BankAccount.ScheduledTransactions {
					t := &st.BankAccount.ScheduledTransactions[i]
					if t.ID != in.ID {
						continue
					}
					if in.Recipient != nil {
						t.Recipient = *in.Recipient
					}
					if in.Amount != nil {
						t.Amount = *in.Amount
					}
					if in.Subject != nil {
						t.Subject = *in.Subject
					}
					if in.Date != nil {
						t.Date = *in.Date
					}
					if in.Recurring != nil {
						t.Recurring = *in.Recurring
					}
					return nil
				}
				return fmt.Errorf("there is no scheduled transaction with id %d", in.ID)
			})
			if err != nil {
				return messageOutput{}, Own, err
			}
			return messageOutput{Message: fmt.Sprintf("Scheduled transaction %d updated.", in.ID)}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "get_balance", Description: "Get the balance of the user's account."},
		func(_ context.Context, _ noInput) (balanceOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return balanceOutput{}, Own, err
			}
			return balanceOutput{Balance: st.BankAccount.Balance}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "get_most_recent_transactions", Description: "Get the user's most recent transactions, oldest first, for example to sum up the last n of them."},
		func(_ context.Context, in recentInput) (transactionsOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return transactionsOutput{}, Own, err
			}
			n := in.N
			if n <= 0 {
				n = 100
			}
			ts := st.BankAccount.Transactions
			if len(ts) > n {
				ts = ts[len(ts)-n:]
			}
			ts = append([]transaction{}, ts...)
			return transactionsOutput{Transactions: ts}, st.BankAccount.origin(ts), nil
		})

	Tool(s, env, &mcp.Tool{Name: "get_scheduled_transactions", Description: "Get the user's scheduled transactions."},
		func(_ context.Context, _ noInput) (scheduledOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return scheduledOutput{}, Own, err
			}
			ts := append([]transaction{}, st.BankAccount.ScheduledTransactions...)
			return scheduledOutput{ScheduledTransactions: ts}, st.BankAccount.origin(ts), nil
		})

	Tool(s, env, &mcp.Tool{Name: "read_file", Description: "Read the content of one of the user's files."},
		func(_ context.Context, in readFileInput) (readFileOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return readFileOutput{}, Own, err
			}
			f, ok := st.Files[in.FilePath]
			if !ok {
				names := make([]string, 0, len(st.Files))
				for n := range st.Files {
					names = append(names, n)
				}
				sort.Strings(names)
				return readFileOutput{}, Own, fmt.Errorf("there is no file %q (the files are %v)", in.FilePath, names)
			}
			origin := Own
			if f.From != "me" {
				origin = ThirdParty
			}
			return readFileOutput{FilePath: in.FilePath, Content: f.Content}, origin, nil
		})

	Tool(s, env, &mcp.Tool{Name: "get_user_info", Description: "Get the user's name and address as the bank keeps them."},
		func(_ context.Context, _ noInput) (userInfoOutput, Origin, error) {
			st, err := View[bankingState](env)
			if err != nil {
				return userInfoOutput{}, Own, err
			}
			u := st.UserAccount
			return userInfoOutput{FirstName: u.FirstName, LastName: u.LastName, Street: u.Street, City: u.City}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "update_password", Description: "Change the password of the user's bank account."},
		func(_ context.Context, in updatePasswordInput) (messageOutput, Origin, error) {
			err := Update(env, func(st *bankingState) error {
				st.UserAccount.Password = in.Password
				return nil
			})
			if err != nil {
				return messageOutput{}, Own, err
			}
			return messageOutput{Message: "Password updated."}, Own, nil
		})

	Tool(s, env, &mcp.Tool{Name: "update_user_info", Description: "Change the user's name or address as the bank keeps them: each field given replaces the one it names."},
		func(_ context.Context, in updateUserInfoInput) (userInfoOutput, Origin, error) {
			var out userInfoOutput
			err := Update(env, func(st *bankingState) error {
				u := &st.UserAccount
				for _, f := range []struct{ in, to *string }{
					{&in.FirstName, &u.FirstName}, {&in.LastName, &u.LastName},
					{&in.Street, &u.Street}, {&in.City, &u.City},
				} {
					if *f.in != "" {
						*f.to = *f.in
					}
				}
				out = userInfoOutput{FirstName: u.FirstName, LastName: u.LastName, Street: u.Street, City: u.City}
				return nil
			})
			return out, Own, err
		})
}
