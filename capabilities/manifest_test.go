package capabilities

import (
	"slices"
	"testing"
	"testing/fstest"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

func TestBuiltinsLoad(t *testing.T) {
	for _, name := range Builtins() {
		m, err := Load(BuiltinPrefix + name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Worker != name {
			t.Errorf("%s: worker %q", name, m.Worker)
		}
		for _, tn := range m.ToolNames() {
			tool := m.Tools[tn]
			if tool.Input == nil {
				t.Errorf("%s: no input schema", tool.Name)
			}
			if !slices.Contains(tool.OutputLabel.Sources(), ifc.ToolSource(tool.Name)) {
				t.Errorf("%s: output label %v lacks its tool source", tool.Name, tool.OutputLabel)
			}
		}
	}
}

func TestPaymentChargeIsPrivileged(t *testing.T) {
	m, err := Load("builtin:payment")
	if err != nil {
		t.Fatal(err)
	}
	c := m.Tools["charge"]
	if !c.Privileged || !c.Approvable {
		t.Fatalf("charge: privileged=%v approvable=%v", c.Privileged, c.Approvable)
	}
	if ifc.UntrustedFrom("web:x").FlowsTo(c.Clearance) {
		t.Fatal("an untrusted value flows to payment.charge")
	}
	if !ifc.TrustedFrom("user").WithSecrecy("pii").FlowsTo(c.Clearance) {
		t.Fatal("trusted pii does not flow to payment.charge")
	}
}

func TestPermissionsAreNarrow(t *testing.T) {
	s := schemas.Subjects{}
	pay, _ := Load("builtin:payment")
	p := pay.Permissions(s)
	if len(p.Publish) != 0 {
		t.Errorf("payment may publish %v; it has no network grant", p.Publish)
	}
	if !slices.Equal(p.Subscribe, []string{"sluice.tool.payment.>", "_INBOX.sluice.payment.>"}) {
		t.Errorf("payment subscribe %v", p.Subscribe)
	}
	web, _ := Load("builtin:web")
	web, err := web.WithGrants(Grants{Net: []string{"127.0.0.1:8088"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := web.Permissions(s).Publish; !slices.Equal(got, []string{"sluice.egress.web"}) {
		t.Errorf("web publish %v", got)
	}
	// A named deployment's worker: everything under its name, nothing
	// under another's.
	acme := web.Permissions(schemas.Subjects{Prefix: "acme"})
	if !slices.Equal(acme.Subscribe, []string{"acme.tool.web.>", "_INBOX.acme.web.>"}) || !slices.Equal(acme.Publish, []string{"acme.egress.web"}) {
		t.Errorf("deployment acme's web worker: subscribe %v, publish %v", acme.Subscribe, acme.Publish)
	}
}

func TestParseErrorsArePositioned(t *testing.T) {
	src := []byte("worker: w\nrun: builtin:w\ntools:\n  go:\n    input_schema: schemas/tools/web.fetch.json\n    privilegd: true\n")
	_, err := Parse("m.yaml", src, nil)
	ds, ok := schemas.AsDiagnostics(err)
	if !ok || len(ds) != 1 {
		t.Fatalf("want one diagnostic, got %v", err)
	}
	d := ds[0]
	if d.Code != schemas.CodeSchemaUnknown || d.Line != 6 || d.Col != 5 {
		t.Fatalf("got %+v", d)
	}
	if want := `m.yaml:6:5: unknown key "privilegd" (did you mean "privileged"?)`; d.Error() != want {
		t.Fatalf("got %q want %q", d.Error(), want)
	}
}

// TestFileGrantSecrecy: what a worker with a file grant returns carries
// the grant's secrecy, files when the grant does not say, none with
// secrecy: []; its tools that are not egress are cleared for it, and the
// manifest the grant was added to is not changed.
func TestFileGrantSecrecy(t *testing.T) {
	t.Parallel()
	base, err := Load("builtin:files")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		grant *FileGrant
		want  []string
	}{
		{&FileGrant{Root: "r"}, []string{"files"}},
		{&FileGrant{Root: "r", Secrecy: []string{"payment"}}, []string{"payment"}},
		{&FileGrant{Root: "r", Secrecy: []string{}}, nil},
	} {
		m, err := base.WithGrants(Grants{Files: tc.grant})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"read", "list", "write"} {
			tool, _ := m.Tool(name)
			if got := tool.OutputLabel.Secrecy(); !slices.Equal(got, tc.want) {
				t.Errorf("grant %v: %s output secrecy %v, want %v", tc.grant.Secrecy, name, got, tc.want)
			}
			if got := tool.Clearance.Secrecy(); !slices.Equal(got, tc.want) {
				t.Errorf("grant %v: %s clearance %v, want %v", tc.grant.Secrecy, name, got, tc.want)
			}
		}
	}
	if tool, _ := base.Tool("read"); len(tool.OutputLabel.Secrecy()) != 0 {
		t.Errorf("WithGrants changed the manifest it was given: %v", tool.OutputLabel)
	}
}

// Only a manifest makes a tool idempotent: every privileged built-in tool
// recognizes its idempotency key and says so; a WASM tool is idempotent
// only when its manifest says it; an MCP tool only by its rule, whatever
// its server's hints.
func TestIdempotentIsTheManifestsWord(t *testing.T) {
	for _, name := range Builtins() {
		m, err := Load(BuiltinPrefix + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range m.ToolNames() {
			if tool := m.Tools[tn]; tool.Privileged && !tool.Idempotent {
				t.Errorf("%s is privileged and not idempotent: a try that may have reached it is never sent again", tool.Name)
			}
		}
	}
	src := "worker: w\nrun: wasm:w.wasm\ntools:\n  send: {privileged: true, input_schema: in.json}\n  book: {privileged: true, idempotent: true, input_schema: in.json}\n"
	m, err := Parse("w.yaml", []byte(src), fstest.MapFS{"in.json": {Data: []byte(`{"type":"object"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Tools["send"].Idempotent || !m.Tools["book"].Idempotent {
		t.Errorf("wasm: send idempotent %v, book %v; want false, true", m.Tools["send"].Idempotent, m.Tools["book"].Idempotent)
	}
	if DecideMCPTool("w.t", nil, nil).Idempotent || DecideMCPTool("w.t", &ToolRule{}, nil).Idempotent {
		t.Error("an MCP tool the manifest says nothing of is idempotent")
	}
	if !DecideMCPTool("w.t", &ToolRule{Idempotent: true}, nil).Idempotent {
		t.Error("an MCP tool whose rule says idempotent: true is not")
	}
}
