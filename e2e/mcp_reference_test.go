package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// referenceServer is a workspace for one of the reference MCP servers
// from npm, as make test installs them (npm ci in examples/mcp), with the
// installed node_modules linked in and the given files; the test is
// skipped, saying why, where node or the server is missing.
func referenceServer(t *testing.T, pkg string, files map[string]string) *workspace {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the reference MCP servers cannot run (make test needs node and npm)")
	}
	mods, err := filepath.Abs("../examples/mcp/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mods, "@modelcontextprotocol", pkg, "dist", "index.js")); err != nil {
		t.Skipf("@modelcontextprotocol/%s is not installed: run make test, or npm ci --prefix examples/mcp", pkg)
	}
	w := newWorkspace(t, files)
	if err := os.Symlink(mods, w.path("node_modules")); err != nil {
		t.Fatal(err)
	}
	return w
}

// label checks a step's output label: its integrity, and that it holds
// the secrecy tags and sources named.
func wantLabel(t *testing.T, s mcpStep, integrity string, secrecy, sources []string) {
	t.Helper()
	l := s.OutputLabel
	if l == nil || l.Integrity != integrity {
		t.Fatalf("step %s: output label %+v: want %s", s.ID, l, integrity)
	}
	for _, tag := range secrecy {
		if !slices.Contains(l.Secrecy, tag) {
			t.Fatalf("step %s: output label %+v: want secrecy %s", s.ID, l, tag)
		}
	}
	for _, src := range sources {
		if !slices.Contains(l.Sources, src) {
			t.Fatalf("step %s: output label %+v: want source %s", s.ID, l, src)
		}
	}
}

const memoryManifest = `worker: memory
run: mcp
command: [node, node_modules/@modelcontextprotocol/server-memory/dist/index.js]
command_files: [node_modules]
# The server keeps its graph in one file, named by this variable; the
# file grant is the only place it can write.
env: {MEMORY_FILE_PATH: "{{files.root}}/memory.jsonl"}
tools:
  create_entities: {}
  open_nodes: {}
  # The manifest adds a tag of its own to what the graph search returns.
  search_nodes: {output_label: {integrity: untrusted, secrecy: [people]}}
grants:
  files: {root: graph, write: true, secrecy: [notes]}
limits: {timeout: 20s, max_output: 256KiB}
`

// The reference memory server from npm, as a worker: a flow creates an
// entity, another reads it back in a later run, from the file the server
// keeps under its file grant. Every output is untrusted with the grant's
// secrecy, a tag the manifest adds is joined in, and a tool the server
// marks neither read-only nor harmless is privileged.
func TestMCPMemoryServer(t *testing.T) {
	w := referenceServer(t, "server-memory", map[string]string{
		"sluice.yaml": "workers:\n  - manifest: memory.yaml\n",
		"memory.yaml": memoryManifest,
		"graph/.keep": "",
		"remember.yaml": `name: remember
inputs: {name: {type: string}, fact: {type: string}}
steps:
  - id: c
    call: memory.create_entities
    with: {entities: [{name: "${inputs.name}", entityType: person, observations: ["${inputs.fact}"]}]}
outputs: {created: "${steps.c.output.entities[0].name}"}
`,
		"recall.yaml": `name: recall
inputs: {name: {type: string}}
steps:
  - {id: o, call: memory.open_nodes, with: {names: ["${inputs.name}"]}}
  - {id: s, call: memory.search_nodes, with: {query: "${inputs.name}"}}
outputs:
  fact: "${steps.o.output.entities[0].observations[0]}"
  found: "${steps.s.output.entities[0].name}"
`,
	})
	r := w.sluice("worker", "discover", "--manifest", "memory.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "memory-server") {
		t.Fatalf("discover: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Annotation defaults: create_entities has no readOnlyHint, so it is
	// privileged; open_nodes says read-only and closed-world; a tool
	// without a rule is not granted.
	for _, l := range []string{"create_entities: privileged=true egress=false output untrusted",
		"open_nodes: privileged=false egress=false output untrusted", "delete_entities: not granted"} {
		if !strings.Contains(r.stdout, l) {
			t.Errorf("discover: want %q in\n%s", l, r.stdout)
		}
	}
	if r := w.sluice("lint", "remember.yaml", "recall.yaml"); r.code != 0 {
		t.Fatalf("lint: exit %d", r.code)
	}

	r = w.sluice("run", "remember.yaml", "--input", "name=Ada Lovelace", "--input", "fact=wrote the first program", "--json")
	if r.code != 0 {
		t.Fatalf("remember: exit %d", r.code)
	}
	run := decodeMCPRun(t, r)
	wantLabel(t, run.step(t, "c"), "untrusted", []string{"notes"}, []string{"tool:memory.create_entities"})
	if run.Outputs["created"] != "Ada Lovelace" {
		t.Fatalf("remember: outputs %v", run.Outputs)
	}
	// The server wrote its graph under the file grant, where the manifest's
	// env told it to.
	b, err := os.ReadFile(w.path("graph/memory.jsonl"))
	if err != nil || !strings.Contains(string(b), "wrote the first program") {
		t.Fatalf("graph/memory.jsonl: %v %q: want the entity written under the file grant", err, b)
	}

	// Another run, another server process: it reads the graph back.
	r = w.sluice("run", "recall.yaml", "--input", "name=Ada Lovelace", "--json")
	if r.code != 0 {
		t.Fatalf("recall: exit %d", r.code)
	}
	run = decodeMCPRun(t, r)
	if run.Outputs["fact"] != "wrote the first program" || run.Outputs["found"] != "Ada Lovelace" {
		t.Fatalf("recall: outputs %v", run.Outputs)
	}
	wantLabel(t, run.step(t, "o"), "untrusted", []string{"notes"}, []string{"tool:memory.open_nodes"})
	wantLabel(t, run.step(t, "s"), "untrusted", []string{"notes", "people"}, []string{"tool:memory.search_nodes"})
	if l := run.step(t, "o").OutputLabel; slices.Contains(l.Secrecy, "people") {
		t.Fatalf("open_nodes: output label %+v: the tag of search_nodes' rule only", l)
	}
}

const everythingManifest = `worker: everything
run: mcp
command: [node, node_modules/@modelcontextprotocol/server-everything/dist/index.js, stdio]
command_files: [node_modules]
tools:
  # Everything the server lists, decided by its annotations where the
  # manifest says nothing.
  "*": {}
  # The sum may be of numbers a server gave: the manifest clears it for
  # untrusted arguments.
  get_sum: {clearance: {integrity: untrusted}}
limits: {timeout: 20s, max_output: 256KiB}
`

// The reference everything server from npm, as a worker. Its tools are
// named with '-', and served with '_'. Its structured content is the
// output, checked against its output schema; an error it reports is a
// tool failure; its content annotations, images and resource links
// change no label; its environment holds PATH alone; where its
// annotations are missing, the worst case.
func TestMCPEverythingServer(t *testing.T) {
	w := referenceServer(t, "server-everything", map[string]string{
		"sluice.yaml":     "workers:\n  - manifest: everything.yaml\n",
		"everything.yaml": everythingManifest,
		"weather.yaml": `name: weather
inputs: {city: {type: string, default: Chicago}}
steps:
  - {id: w, call: everything.get_structured_content, with: {location: "${inputs.city}"}}
  - {id: s, call: everything.get_sum, with: {a: "${steps.w.output.temperature}", b: "${steps.w.output.humidity}"}}
outputs: {temperature: "${steps.w.output.temperature}", conditions: "${steps.w.output.conditions}", sum: "${steps.s.output.text}"}
`,
		"reference.yaml": `name: reference
inputs: {id: {type: number}}
steps:
  - {id: r, call: everything.get_resource_reference, with: {resourceType: Text, resourceId: "${inputs.id}"}}
outputs: {text: "${steps.r.output.text}"}
`,
		"misc.yaml": `name: misc
steps:
  - {id: m, call: everything.get_annotated_message, with: {messageType: error, includeImage: true}}
  - {id: l, call: everything.get_resource_links, with: {count: 2}}
  - {id: e, call: everything.get_env, with: {}}
  - {id: echo, call: everything.echo, with: {message: hello}}
outputs: {message: "${steps.m.output.text}", links: "${steps.l.output.text}", env: "${steps.e.output.text}", echo: "${steps.echo.output.text}"}
`,
	})
	r := w.sluice("worker", "discover", "--manifest", "everything.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "mcp-servers/everything") {
		t.Fatalf("discover: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, l := range []string{
		// Read-only and closed-world by its hints: neither flag.
		"get-structured-content (served as get_structured_content): privileged=false egress=false output untrusted",
		// No readOnlyHint: privileged; openWorldHint true: egress.
		"gzip-file-as-resource (served as gzip_file_as_resource): privileged=true egress=true output untrusted",
		"toggle-simulated-logging (served as toggle_simulated_logging): privileged=true egress=false output untrusted",
	} {
		if !strings.Contains(r.stdout, l) {
			t.Errorf("discover: want %q in\n%s", l, r.stdout)
		}
	}
	// A flow names the tools with '_'; the server's own names are not
	// Sluice tools.
	if r := w.sluice("lint", "weather.yaml", "reference.yaml", "misc.yaml"); r.code != 0 {
		t.Fatalf("lint: exit %d", r.code)
	}
	w.write("dash.yaml", "name: dash\nsteps:\n  - {id: d, call: everything.get-sum, with: {a: 1, b: 2}}\n")
	if r := w.sluice("lint", "dash.yaml"); r.code == 0 {
		t.Fatalf("lint of a flow calling everything.get-sum: exit 0, want an error")
	}

	// Structured content is the output; what is computed from it stays
	// untrusted.
	r = w.sluice("run", "weather.yaml", "--json")
	if r.code != 0 {
		t.Fatalf("weather: exit %d", r.code)
	}
	run := decodeMCPRun(t, r)
	if run.Outputs["temperature"] != float64(36) || run.Outputs["conditions"] != "Light rain / drizzle" || run.Outputs["sum"] != "The sum of 36 and 82 is 118." {
		t.Fatalf("weather: outputs %v", run.Outputs)
	}
	wantLabel(t, run.step(t, "w"), "untrusted", nil, []string{"tool:everything.get_structured_content"})
	wantLabel(t, run.step(t, "s"), "untrusted", nil, []string{"tool:everything.get_sum", "tool:everything.get_structured_content"})

	// An error the server reports is a tool failure, with its message.
	r = w.sluice("run", "reference.yaml", "--input", "id=-1", "--json")
	run = decodeMCPRun(t, r)
	if s := run.step(t, "r"); r.code != 1 || s.Status != "failed" || !strings.Contains(s.Error, "reported an error") ||
		!strings.Contains(s.Error, "Invalid resourceId") {
		t.Fatalf("reference -1: exit %d, step %+v: want a tool failure with the server's message", r.code, s)
	}
	r = w.sluice("run", "reference.yaml", "--input", "id=2", "--json")
	if r.code != 0 {
		t.Fatalf("reference 2: exit %d", r.code)
	}

	// Content annotations (audience, priority), an image and resource
	// links: all untrusted text, the image and links named, not included
	// nor fetched; the server's environment holds PATH alone.
	r = w.sluice("run", "misc.yaml", "--json")
	if r.code != 0 {
		t.Fatalf("misc: exit %d", r.code)
	}
	run = decodeMCPRun(t, r)
	for _, id := range []string{"m", "l", "e", "echo"} {
		wantLabel(t, run.step(t, id), "untrusted", nil, nil)
	}
	out := func(k string) string { s, _ := run.Outputs[k].(string); return s }
	if !strings.Contains(out("message"), "Error: Operation failed") || !strings.Contains(out("message"), "[image image/png, not shown]") {
		t.Fatalf("annotated message: %q", out("message"))
	}
	if !strings.Contains(out("links"), "not fetched]") {
		t.Fatalf("resource links: %q", out("links"))
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(out("env")), &env); err != nil {
		t.Fatalf("get_env: %v: %q", err, out("env"))
	}
	if _, ok := env["PATH"]; !ok || len(env) != 1 {
		t.Fatalf("the server's environment %v: want PATH alone", env)
	}
	if out("echo") != "Echo: hello" {
		t.Fatalf("echo: %q", out("echo"))
	}
}
