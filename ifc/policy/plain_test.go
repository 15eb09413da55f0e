package policy

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// plainTools is the catalog the differential test loads policies against:
// the shipped tools with their input schemas (whose rules get typed
// programs), and tools whose arguments are unknown.
func plainTools(t testing.TB) Tools {
	tools := builtinTools(t)
	for _, name := range []string{"calendar.list", "calendar.create", "notes.write", "email.send"} {
		tools[name] = (*schemas.Schema)(nil)
	}
	return tools
}

// plainToolNames are the tools a fuzzed call may be of: the catalog's and
// one it does not know.
var plainToolNames = []string{"payment.charge", "payment.balance", "web.fetch", "llm.complete", "llm.extract",
	"calendar.list", "calendar.create", "notes.write", "email.send", "other.tool"}

var (
	plainSources    = []string{"user", "web:flights.example", "email:someone@example.com", "tool:web.fetch"}
	plainSecrecy    = []string{"payment", "pii", "calendar"}
	plainClearances = []ifc.Clearance{
		ifc.NewClearance(ifc.Trusted, "payment", "pii"),
		ifc.NewClearance(ifc.Untrusted),
		ifc.NewClearance(ifc.Untrusted, "calendar"),
		ifc.NewClearance(ifc.Trusted),
	}
)

// pick returns the elements of from whose bit is set in bits.
func pick(from []string, bits uint8) []string {
	var out []string
	for i, s := range from {
		if bits&(1<<i) != 0 {
			out = append(out, s)
		}
	}
	return out
}

func plainLabel(bits uint8) ifc.Label {
	integrity := ifc.Trusted
	if bits&0x80 != 0 {
		integrity = ifc.Untrusted
	}
	return ifc.New(integrity, pick(plainSecrecy, bits>>4&0x7), pick(plainSources, bits&0xf))
}

// plainInput builds a call from the fuzzer's numbers: a tool of the
// catalog (its worker the part before the dot, as every manifest has it),
// any flags and clearance, and labels and arguments from small sets that
// the shipped rules test.
func plainInput(tool, flags, ctx, amountLabel, payeeLabel uint8, amount int64, payee string) Input {
	name := plainToolNames[int(tool)%len(plainToolNames)]
	worker, _, _ := strings.Cut(name, ".")
	args := map[string]any{"amount": amount, "payee": payee, "currency": "EUR"}
	if flags&0x40 != 0 {
		args["confirmed"] = flags&0x80 != 0
	}
	if flags&0x20 != 0 {
		args["amount"] = float64(amount) / 4
	}
	return Input{
		Tool: Tool{Name: name, Worker: worker, Privileged: flags&1 != 0, Approvable: flags&2 != 0, Egress: flags&4 != 0,
			Clearance: plainClearances[int(flags>>3&3)]},
		Label:     plainLabel(ctx),
		ArgLabels: map[string]ifc.Label{"amount": plainLabel(amountLabel), "payee": plainLabel(payeeLabel)},
		Args:      args,
		Run:       Run{ID: "01J", Flow: "fuzz", Step: "s"},
	}
}

// same reports how two decisions differ, or "".
func same(fast, plain Decision) string {
	switch {
	case fast.Action != plain.Action:
		return fmt.Sprintf("action %s, plain %s", fast.Action, plain.Action)
	case !slices.Equal(fast.Rules, plain.Rules):
		return fmt.Sprintf("rules %v, plain %v", fast.Rules, plain.Rules)
	case !slices.Equal(fast.Reasons, plain.Reasons):
		return fmt.Sprintf("reasons %q, plain %q", fast.Reasons, plain.Reasons)
	case !slices.Equal(fast.Lowered, plain.Lowered):
		return fmt.Sprintf("lowered %v, plain %v", fast.Lowered, plain.Lowered)
	case !fast.Label.Equal(plain.Label):
		return fmt.Sprintf("label %s, plain %s", fast.Label, plain.Label)
	case !slices.Equal(fast.Errors, plain.Errors):
		return fmt.Sprintf("errors %q, plain %q", fast.Errors, plain.Errors)
	}
	return ""
}

// FuzzFastPathsArePlain holds Decide's fast paths — each rule evaluated
// only for the tools it is about, compiled with their arguments typed and
// its tests of the tool folded, and skipped for tools whose flags it
// excludes — to a plain evaluation of every rule as written, for any
// policy the loader accepts and any call. Seeds: the shipped policies
// below, and testdata/fuzz/FuzzFastPathsArePlain.
func FuzzFastPathsArePlain(f *testing.F) {
	shipped, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	policies := []string{string(shipped), string(benchRules(20).Src), `rules:
  - name: not-the-payment
    when: tool.name != "payment.charge" && tool.egress
    action: deny
  - name: web-or-llm
    when: tool.worker in ["web", "llm"] && !tool.privileged
    action: allow
  - name: either
    when: tool.name == "email.send" || tool.name == "calendar.create"
    action: approve
  - name: endorse-balance
    when: tool.name == "payment.balance" && tool.privileged == false
    action: endorse
`}
	for i, p := range policies {
		for j := range 12 {
			f.Add(p, uint8(i+j), uint8(j*37), uint8(j*53), uint8(j*11), uint8(j*29), int64(j*150), []string{"acct_hotel_1", "acct_x", ""}[j%3])
		}
	}
	tools := plainTools(f)
	f.Fuzz(func(t *testing.T, src string, tool, flags, ctx, amountLabel, payeeLabel uint8, amount int64, payee string) {
		s, err := Load(tools, DefaultFile(), File{Name: "fuzz.yaml", Src: []byte(src)})
		if err != nil {
			return
		}
		in := plainInput(tool, flags, ctx, amountLabel, payeeLabel, amount, payee)
		fast := s.Decide(in)
		plain := s.decide(in, s.plainEntry(in.Tool))
		if diff := same(fast, plain); diff != "" {
			t.Fatalf("the fast paths decide otherwise than every rule as written: %s\ncall: %+v\npolicy:\n%s", diff, in, src)
		}
	})
}

// TestPlainEvaluationDiffers makes sure the differential test compares
// something: on the same call, a policy that matches decides otherwise
// than one that does not, in both evaluations.
func TestPlainEvaluationDiffers(t *testing.T) {
	tools := plainTools(t)
	deny := mustLoadTools(t, tools, DefaultFile(), file("d.yaml", "rules:\n  - name: d\n    when: tool.name == \"web.fetch\" && !tool.privileged\n    action: deny\n"))
	in := plainInput(2, 0, 0, 0, 0, 1, "x") // web.fetch, no flags
	if in.Tool.Name != "web.fetch" {
		t.Fatalf("tool %s", in.Tool.Name)
	}
	fast, plain := deny.Decide(in), deny.decide(in, deny.plainEntry(in.Tool))
	if fast.Action != Deny || plain.Action != Deny || same(fast, plain) != "" {
		t.Fatalf("fast %+v, plain %+v", fast, plain)
	}
	in.Tool.Privileged = true // the flag test excludes the rule
	fast, plain = deny.Decide(in), deny.decide(in, deny.plainEntry(in.Tool))
	if fast.Action == Deny || plain.Action == Deny || same(fast, plain) != "" {
		t.Fatalf("privileged: fast %+v, plain %+v", fast, plain)
	}
}
