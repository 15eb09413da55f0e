package lower

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOnlyPolicyBuildsReasons: the go tool already refuses an import of
// this package from outside ifc/; within it, only ifc (which applies
// reasons) and ifc/policy (which builds them) may import it.
func TestOnlyPolicyBuildsReasons(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/sluicehq/sluice/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "github.com/sluicehq/sluice/ifc/internal/lower"
	allowed := []string{"github.com/sluicehq/sluice/ifc", "github.com/sluicehq/sluice/ifc/policy"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !slices.Contains(fields[1:], self) {
			continue
		}
		if !slices.Contains(allowed, fields[0]) {
			t.Errorf("%s imports %s: only %v may build or apply reasons", fields[0], self, allowed)
		}
	}
}

func TestZeroReason(t *testing.T) {
	var r Reason
	if r.Kind() != None || r.Source() != "" || r.Tags() != nil {
		t.Errorf("zero Reason = %+v", r)
	}
	if d := DeclassifiedBy("r", []string{"pii", "calendar", "pii"}); !slices.Equal(d.Tags(), []string{"calendar", "pii"}) || d.Source() != "declassified:r" {
		t.Errorf("DeclassifiedBy = %+v", d)
	}
}
