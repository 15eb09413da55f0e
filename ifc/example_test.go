package ifc_test

import (
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/ifc"
)

// A flow input joined with a web page gives a value that is as untrusted
// as the page and carries both sources.
func ExampleJoin() {
	input := ifc.TrustedFrom(ifc.SourceUser)
	page := ifc.UntrustedFrom(ifc.WebSource("flights.example"))
	card := ifc.TrustedFrom(ifc.ToolSource("wallet.card")).WithSecrecy("payment")

	fmt.Println(ifc.Join(input, page))
	fmt.Println(ifc.Join(input, card))
	fmt.Println(ifc.Join())
	// Output:
	// untrusted{}<user,web:flights.example>
	// trusted{payment}<tool:wallet.card,user>
	// trusted{}<>
}

// A payment tool cleared for payment data and trusted input accepts the
// card number the user gave, but not a price read from a web page, and
// not the user's passport number.
func ExampleLabel_FlowsTo() {
	payment := ifc.NewClearance(ifc.Trusted, "payment")

	card := ifc.TrustedFrom(ifc.SourceUser).WithSecrecy("payment")
	price := ifc.UntrustedFrom(ifc.WebSource("flights.example"))
	passport := ifc.TrustedFrom(ifc.SourceUser).WithSecrecy("pii")

	fmt.Println(card.FlowsTo(payment))
	fmt.Println(price.FlowsTo(payment))
	fmt.Println(passport.FlowsTo(payment))
	fmt.Println(ifc.Join(card, price).FlowsTo(payment))
	// Output:
	// true
	// false
	// false
	// false
}

// Labels travel as canonical JSON: sets sorted, both always present.
func ExampleLabel_MarshalJSON() {
	l := ifc.New(ifc.Untrusted, []string{"pii", "calendar"}, []string{"email:bob@x.example"})
	b, _ := json.Marshal(l)
	fmt.Println(string(b))

	var back ifc.Label
	err := json.Unmarshal([]byte(`{"secrecy":["pii"]}`), &back)
	fmt.Println(err)
	// Output:
	// {"integrity":"untrusted","secrecy":["calendar","pii"],"sources":["email:bob@x.example"]}
	// label: integrity is required
}
