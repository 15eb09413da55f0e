package schemas

import "testing"

// The default deployment keeps the names its state directories were
// written with; any other deployment's names carry its name, and no two
// deployments share one.
func TestStoreName(t *testing.T) {
	for _, tc := range []struct{ deployment, kind, want string }{
		{"", "AUDIT", "SLUICE_AUDIT"},
		{"sluice", "RUNS", "SLUICE_RUNS"},
		{"sluice", "CAPS", "SLUICE_CAPS"},
		{"acme", "AUDIT", "SLUICE_ACME_AUDIT"},
		{"acme", "STEPS", "SLUICE_ACME_STEPS"},
		{"eu-west-2", "REMEMBERED", "SLUICE_EU-WEST-2_REMEMBERED"},
	} {
		if got := StoreName(tc.deployment, tc.kind); got != tc.want {
			t.Errorf("StoreName(%q, %q) = %q, want %q", tc.deployment, tc.kind, got, tc.want)
		}
	}
	kinds := []string{"AUDIT", "RUNS", "STEPS", "APPROVALS", "REMEMBERED", "CAPS"}
	seen := map[string]string{}
	for _, d := range []string{"sluice", "acme", "audit", "runs", "acme-runs", "a", "a-b"} {
		for _, k := range kinds {
			name := StoreName(d, k)
			if prev, ok := seen[name]; ok {
				t.Errorf("%s is both %s and %s/%s", name, prev, d, k)
			}
			seen[name] = d + "/" + k
		}
	}
}

// A worker's reply inbox is below its deployment's prefix, so a worker
// named alike in another deployment on the same account has another.
func TestInboxUnderPrefix(t *testing.T) {
	a, b := Subjects{Prefix: "acme"}, Subjects{Prefix: "globex"}
	if got := a.Inbox("web"); got != "_INBOX.acme.web" {
		t.Errorf("Inbox = %q", got)
	}
	if got := (Subjects{}).Inbox("web"); got != "_INBOX.sluice.web" {
		t.Errorf("default Inbox = %q", got)
	}
	if a.Inbox("web") == b.Inbox("web") {
		t.Error("two deployments share a worker's inbox")
	}
}
