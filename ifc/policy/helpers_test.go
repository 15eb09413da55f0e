package policy

import (
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

// builtinTools is the catalog of the shipped workers' tools, from their
// embedded input schemas.
func builtinTools(t testing.TB) Tools {
	t.Helper()
	tools := Tools{}
	for _, name := range []string{"payment.charge", "payment.balance", "web.fetch", "llm.complete", "llm.extract"} {
		sch, err := schemas.Load("tools/" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		tools[name] = sch
	}
	return tools
}

func mustLoadTools(t testing.TB, tools Tools, files ...File) *Set {
	t.Helper()
	s, err := Load(tools, files...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}
