package e2e

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// module is the import path of this module.
const module = "github.com/sluicehq/sluice"

// layer is one row of the import table: which Sluice packages and which
// external modules the packages it names may import. A pattern ending in
// "/..." names the package and everything under it. The standard library
// is always allowed.
type layer struct {
	pkgs     []string
	sluice   []string
	external []string
}

// importTable is the layering of the code base, written once as data.
// Changing it is a design change, not a build fix: the trusted core (ifc)
// imports nothing; the wire contract (schemas) and the manifests
// (capabilities) sit on it; workers and the orchestrator both build on
// those and never on each other. Helpers under internal/ hold mechanism
// both sides share (NATS credentials, JetStream retries, the seal of a
// worker's sockets, display escaping) and import no Sluice package above
// them.
//
// Only a package's own (non-test) imports are checked, as in the Go
// tree's deps test: tests may reach across layers to drive the system.
var importTable = []layer{
	{pkgs: []string{"ifc", "ifc/internal/..."},
		sluice: []string{"ifc/internal/..."}},
	{pkgs: []string{"schemas"},
		sluice:   []string{"ifc"},
		external: []string{"go.yaml.in/yaml/v3", "github.com/santhosh-tekuri/jsonschema/v6", "golang.org/x/text"}},
	{pkgs: []string{"ifc/expr", "ifc/policy"},
		sluice:   []string{"ifc", "ifc/internal/...", "schemas"},
		external: []string{"cel.dev/cel-go"}},
	{pkgs: []string{"capabilities"},
		sluice: []string{"ifc", "schemas"}},
	{pkgs: []string{"internal/..."},
		sluice: []string{"internal/..."},
		external: []string{"github.com/nats-io/nats.go", "github.com/nats-io/nkeys", "github.com/nats-io/jwt/v2",
			"github.com/mtibben/confusables", "github.com/emersion/go-smtp", "github.com/emersion/go-sasl",
			"go.yaml.in/yaml/v3", "golang.org/x/sys"}},
	{pkgs: []string{"worker", "worker/..."},
		sluice: []string{"ifc", "schemas", "capabilities", "worker", "worker/internal/...", "internal/..."},
		external: []string{"github.com/nats-io/nats.go", "github.com/landlock-lsm/go-landlock", "golang.org/x/sys",
			"golang.org/x/net", "golang.org/x/text", "github.com/emersion/go-ical", "github.com/teambition/rrule-go",
			"github.com/emersion/go-message", "github.com/oklog/ulid/v2",
			// The W3C trace context of a call, read from its headers; no
			// tracer, no exporter.
			"go.opentelemetry.io/otel/propagation"}},
	// The launcher of a stdio server with network grants seals itself
	// (internal/seal) and brings loopback up in its namespace (x/sys).
	{pkgs: []string{"worker/mcp"},
		sluice:   []string{"ifc", "schemas", "capabilities", "worker", "internal/seal"},
		external: []string{"github.com/modelcontextprotocol/go-sdk", "golang.org/x/sys"}},
	{pkgs: []string{"worker/wasm"},
		sluice:   []string{"ifc", "schemas", "capabilities", "worker", "internal/..."},
		external: []string{"github.com/tetratelabs/wazero"}},
	{pkgs: []string{"orchestrator", "orchestrator/..."},
		sluice: []string{"ifc/...", "schemas", "capabilities", "orchestrator/...", "internal/..."},
		external: []string{"github.com/nats-io/nats-server/v2", "github.com/nats-io/nats.go", "github.com/nats-io/jwt/v2",
			"github.com/nats-io/nkeys", "cel.dev/cel-go", "github.com/oklog/ulid/v2", "code.dny.dev/ssrf",
			"github.com/emersion/go-smtp", "github.com/emersion/go-sasl", "golang.org/x/sys",
			// Traces and metrics (orchestrator/internal/telemetry, the
			// web page's /metrics; docs/observability.md): the tracing
			// API, OTLP's messages and the OTLP/HTTP client.
			"go.opentelemetry.io/otel", "go.opentelemetry.io/proto/otlp", "github.com/prometheus/client_golang"}},
	{pkgs: []string{"orchestrator/mcpserver"},
		sluice:   []string{"ifc/...", "schemas", "capabilities", "orchestrator/...", "internal/..."},
		external: []string{"github.com/modelcontextprotocol/go-sdk"}},
	// The gate is the only path from a run to a worker: it sees a run
	// only through its interface (gate.Run), never the scheduler, the
	// approvals or the run store behind it.
	{pkgs: []string{"orchestrator/gate"},
		sluice: []string{"ifc/...", "schemas", "capabilities", "orchestrator/audit", "orchestrator/flow",
			"orchestrator/internal/...", "internal/..."},
		// The trace API alone (a call's span context, for the egress
		// broker): spans start through orchestrator/internal/telemetry.
		external: []string{"github.com/nats-io/nats.go", "go.opentelemetry.io/otel/trace"}},
	// The plan interpreter: Starlark, and labels as values.
	{pkgs: []string{"orchestrator/plan/interp"},
		sluice: []string{"ifc"}, external: []string{"go.starlark.net"}},
	{pkgs: []string{"cmd/...", "examples/...", "e2e", "e2e/..."},
		sluice: []string{"..."}, external: []string{""}},
}

// TestImportTable fails on any import the table does not allow, and on a
// package no row of the table names.
func TestImportTable(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var checked int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(fields[0], module+"/")
		if !ok {
			continue
		}
		row := rowFor(pkg)
		if row == nil {
			t.Errorf("package %s is in no row of the import table", pkg)
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			if why := row.refuses(imp); why != "" {
				t.Errorf("%s imports %s: %s", pkg, imp, why)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d packages checked: go list printed\n%s", checked, out)
	}
}

// rowFor is the most specific row naming pkg: an exact name wins over a
// pattern.
func rowFor(pkg string) *layer {
	var best *layer
	for i := range importTable {
		for _, p := range importTable[i].pkgs {
			if p == pkg {
				return &importTable[i]
			}
			if matches(p, pkg) && best == nil {
				best = &importTable[i]
			}
		}
	}
	return best
}

func matches(pattern, pkg string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pattern == pkg
}

// refuses says why the row does not allow imp, or "" if it does.
func (l *layer) refuses(imp string) string {
	if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
		for _, p := range l.sluice {
			if matches(p, rel) {
				return ""
			}
		}
		return "not allowed by the import table (e2e/imports_test.go)"
	}
	if first, _, _ := strings.Cut(imp, "/"); !strings.Contains(first, ".") {
		return "" // the standard library
	}
	for _, m := range l.external {
		if m == "" || imp == m || strings.HasPrefix(imp, m+"/") {
			return ""
		}
	}
	return "an external module the import table does not allow here (e2e/imports_test.go)"
}

func TestImportTableMatches(t *testing.T) {
	for _, c := range []struct {
		pkg, imp string
		ok       bool
	}{
		{"ifc", "encoding/json", true},
		{"ifc", module + "/internal/jsonappend", false},
		{"ifc", module + "/ifc/internal/lower", true},
		{"orchestrator/supervisor", module + "/worker", false},
		{"orchestrator/supervisor", module + "/internal/seal", true},
		{"worker/web", "github.com/tetratelabs/wazero", false},
		{"worker/wasm", "github.com/tetratelabs/wazero/api", true},
		{"schemas", module + "/orchestrator/flow", false},
		{"orchestrator/engine", "github.com/nats-io/nats.go/jetstream", true},
		{"orchestrator/gate", module + "/orchestrator/engine", false},
		{"orchestrator/gate", module + "/orchestrator/runstore", false},
		{"orchestrator/gate", module + "/orchestrator/flow", true},
		{"orchestrator/gate", "go.opentelemetry.io/otel/trace", true},
		{"orchestrator/gate", "go.opentelemetry.io/otel/sdk/trace", false},
		{"worker", "go.opentelemetry.io/otel/propagation", true},
		{"worker", "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp", false},
		{"orchestrator/web", "github.com/prometheus/client_golang/prometheus/promhttp", true},
		{"cmd/sluice", module + "/worker/wasm", true},
	} {
		row := rowFor(c.pkg)
		if row == nil {
			t.Fatalf("%s: no row", c.pkg)
		}
		if got := row.refuses(c.imp) == ""; got != c.ok {
			t.Errorf("%s importing %s allowed=%v, want %v", c.pkg, c.imp, got, c.ok)
		}
	}
}
