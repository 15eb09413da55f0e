package capabilities

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

//go:embed builtin/*.yaml
var builtins embed.FS

// BuiltinPrefix marks a shipped manifest or worker: "builtin:payment".
const BuiltinPrefix = "builtin:"

// Manifest is the whole authority of one worker: its tools, what it may
// reach, and its limits. From it the orchestrator derives the worker's NATS
// permissions, egress allowlist, secrets, file root and limits. Anything a
// manifest leaves out means none.
//
// A Manifest is built by [Load] or [Parse] and not changed afterwards.
type Manifest struct {
	// Worker is the worker's name; its tools are served on
	// sluice.tool.<Worker>.<tool>.
	Worker string
	// Run is what serves the tools: "builtin:NAME", "wasm:PATH" or "mcp".
	Run string
	// MCP is set for run: mcp: the server's command and the manifest's
	// rules for its tools, which come from the server's discovered list.
	MCP *MCP
	// Tools by short name ("charge" for payment.charge).
	Tools map[string]*Tool
	// Grants of network, secrets and files. Empty means none.
	Grants Grants
	// Limits on each call.
	Limits Limits
	// File is where the manifest came from ("builtin:payment" or a path).
	File string
	// Digest is the SHA-256, in hex, of the manifest's source and of every
	// schema file it reads: what the manifest says, for a fingerprint of a
	// deployment. Grants added by WithGrants are not in it.
	Digest string

	// Discovery is, for run: mcp, what the server listed when it was last
	// discovered: the worker checks that the running server still says
	// the same.
	Discovery *Discovery
	// skipped are the MCP server's tools the manifest does not grant.
	skipped []string
}

// Tool is one tool of a worker.
type Tool struct {
	// Name is the full name, "worker.tool".
	Name        string
	Description string
	// DescriptionFromServer says Description is the words an MCP server
	// sent when it listed its tools, not the manifest's: untrusted text,
	// which a planner is never shown and which raises an agent's context
	// by the tool's output label.
	DescriptionFromServer bool
	// SchemasFromServer says Input and Output are the schemas an MCP server
	// sent: a model is shown only their structure (schemas.Structure),
	// never their words.
	SchemasFromServer bool
	// Privileged tools have side effects someone cares about.
	Privileged bool
	// Idempotent tools have the effect of one call however often a call
	// is sent with its idempotency key: they recognize the key (as the
	// built-in payment, email and calendar workers do), or what they do
	// does not depend on how often. A privileged tool that is not
	// idempotent is sent at most once per key: a try that may have taken
	// effect is never sent again, after a failure, a failover or a crash.
	Idempotent bool
	// Approvable tools are held for a human when the clearance check fails,
	// instead of being denied.
	Approvable bool
	// Egress tools send their arguments off the machine.
	Egress bool
	// TrustedNetwork tools keep the call's integrity for what they read over
	// the network: their hosts (a model API) are trusted to compute on what
	// they are sent. Otherwise every host a call reaches makes its output
	// untrusted, with source web:<host>.
	TrustedNetwork bool
	// Input validates the arguments; Output, when set, the output.
	Input, Output *schemas.Schema
	// OutputLabel is joined with the call's context label to label the
	// output. It always carries the source tool:<Name>.
	OutputLabel ifc.Label
	// Clearance is what the tool's arguments may carry. Missing means
	// trusted with no secrecy.
	Clearance ifc.Clearance
}

// Grants of a worker. Each missing or empty field means none.
type Grants struct {
	// Net lists host:port the worker may reach through the egress broker.
	Net []string `json:"net,omitempty"`
	// Secrets lists the secrets the broker may fill in, each for its hosts.
	Secrets []SecretGrant `json:"secrets,omitempty"`
	// Files is the worker's file root, if any.
	Files *FileGrant `json:"files,omitempty"`
}

// SecretGrant lets the broker substitute {{secret:Name}} for Hosts only.
type SecretGrant struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}

// FileGrant confines a worker's files to Root; Write allows writing.
type FileGrant struct {
	Root  string `json:"root"`
	Write bool   `json:"write,omitempty"`
	// Secrecy tags what the worker returns from the root: a user's files
	// are private. Missing means [DefaultFileSecrecy]; an empty list means
	// none (a root of public files). The worker's tools that are not
	// egress are cleared for these tags too, so that what was read may be
	// written back.
	Secrecy []string `json:"secrecy,omitempty"`
}

// DefaultFileSecrecy is the secrecy of what a file grant's root holds
// when the grant does not say.
const DefaultFileSecrecy = "files"

// Tags returns the grant's secrecy tags.
func (g *FileGrant) Tags() []string {
	if g == nil {
		return nil
	}
	if g.Secrecy == nil {
		return []string{DefaultFileSecrecy}
	}
	return slices.Clone(g.Secrecy)
}

// withFileSecrecy returns m with the secrecy of its file grant joined into
// every tool's output label, and added to the clearance of every tool
// that is not egress. The tools are copied: m is not changed.
func (m *Manifest) withFileSecrecy() *Manifest {
	tags := m.Grants.Files.Tags()
	if len(tags) == 0 {
		return m
	}
	c := *m
	c.Tools = make(map[string]*Tool, len(m.Tools))
	for name, t := range m.Tools {
		nt := *t
		nt.OutputLabel = t.OutputLabel.WithSecrecy(tags...)
		if !t.Egress {
			nt.Clearance = ifc.NewClearance(t.Clearance.Integrity(), append(t.Clearance.Secrecy(), tags...)...)
		}
		c.Tools[name] = &nt
	}
	return &c
}

// Limits bound each call.
type Limits struct {
	// Timeout of one call; default 30s.
	Timeout time.Duration
	// Memory of a WASM instance; default 64 MiB.
	Memory int64
	// MaxOutput is the largest reply; default 1 MiB.
	MaxOutput int64
}

// Defaults for limits a manifest leaves out.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultMemory    = 64 << 20
	DefaultMaxOutput = 1 << 20
)

// Codes of manifest diagnostics.
const (
	CodeBadManifest = "manifest_invalid"
	CodeBadSchema   = "manifest_bad_schema"
	CodeBadLimit    = "manifest_bad_limit"
	CodeNotFound    = "manifest_not_found"
)

// Builtins lists the names of the shipped manifests.
func Builtins() []string {
	entries, _ := builtins.ReadDir("builtin")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return out
}

// Load reads a manifest: "builtin:NAME" for a shipped one, else a file path.
func Load(ref string) (*Manifest, error) {
	if name, ok := strings.CutPrefix(ref, BuiltinPrefix); ok {
		src, err := builtins.ReadFile("builtin/" + name + ".yaml")
		if err != nil {
			return nil, schemas.Diagnostics{{File: ref, Code: CodeNotFound, Severity: schemas.SeverityError,
				Message: fmt.Sprintf("no built-in manifest %q (built-in: %s)", name, strings.Join(Builtins(), ", "))}}
		}
		return Parse(ref, src, nil)
	}
	return load(ref, true)
}

func load(file string, discovered bool) (*Manifest, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return parse(file, src, os.DirFS(filepath.Dir(file)), discovered)
}

// Parse decodes and checks a manifest. Schema paths are read from dir; the
// shipped schemas are found under "schemas/" when dir is nil or lacks them.
// A run: mcp manifest's tools are those its server listed, read from the
// cache beside it in dir (see [Discovery]); a missing or stale cache is an
// error.
func Parse(file string, src []byte, dir fs.FS) (*Manifest, error) {
	return parse(file, src, dir, true)
}

func parse(file string, src []byte, dir fs.FS, discovered bool) (*Manifest, error) {
	doc, ds := schemas.ParseYAML(file, src)
	if err := ds.Err(); err != nil {
		return nil, err
	}
	sch, err := schemas.Load("manifest.json")
	if err != nil {
		return nil, err
	}
	if ds := doc.Validate(sch); ds.Err() != nil {
		return nil, ds.Err()
	}
	var raw struct {
		Worker       string            `json:"worker"`
		Run          string            `json:"run"`
		Command      []string          `json:"command"`
		CommandFiles []string          `json:"command_files"`
		Env          map[string]string `json:"env"`
		URL          string            `json:"url"`
		Headers      map[string]string `json:"headers"`
		Tools        map[string]struct {
			Description  string         `json:"description"`
			Privileged   *bool          `json:"privileged"`
			Idempotent   bool           `json:"idempotent"`
			Approvable   *bool          `json:"approvable"`
			Egress       *bool          `json:"egress"`
			Trusted      bool           `json:"trusted_network"`
			InputSchema  string         `json:"input_schema"`
			OutputSchema string         `json:"output_schema"`
			OutputLabel  *ifc.Label     `json:"output_label"`
			Clearance    *ifc.Clearance `json:"clearance"`
		} `json:"tools"`
		Grants Grants `json:"grants"`
		Limits struct {
			Timeout   string `json:"timeout"`
			Memory    string `json:"memory"`
			MaxOutput string `json:"max_output"`
		} `json:"limits"`
	}
	b, err := json.Marshal(doc.Value)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", file, err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", file, err)
	}
	m := &Manifest{Worker: raw.Worker, Run: raw.Run, Grants: raw.Grants, File: file, Tools: map[string]*Tool{}}
	wasm := strings.HasPrefix(raw.Run, "wasm:")
	digest := sha256.New()
	digest.Write(src)
	schema := func(path string) (*schemas.Schema, error) {
		sch, b, err := loadSchema(dir, path)
		fmt.Fprintf(digest, "\x00%s\x00%d\x00", path, len(b))
		digest.Write(b)
		return sch, err
	}
	if raw.Run == RunMCP {
		m.MCP = &MCP{Command: raw.Command, Env: raw.Env, URL: raw.URL, Headers: raw.Headers, Dir: filepath.Dir(file), Cache: CachePath(file), Hash: hashOf(src)}
		switch {
		case raw.Command == nil && raw.URL == "":
			ds.Add(file, doc.Pos("/run"), CodeBadManifest, "run: mcp needs command: (a stdio server) or url: (a streamable HTTP server)")
		case raw.Command != nil && raw.URL != "":
			ds.Add(file, doc.Pos("/url"), CodeBadManifest, "url: a server is started from command: or reached at url:, not both")
		case raw.URL != "":
			if _, err := m.MCP.HostPort(); err != nil {
				ds.Add(file, doc.Pos("/url"), CodeBadManifest, "url: %v", err)
			}
			for key, set := range map[string]bool{"command_files": raw.CommandFiles != nil, "env": raw.Env != nil} {
				if set {
					ds.Add(file, doc.Pos("/"+key), CodeBadManifest, "%s is for a server started from command:; this one is reached at url:", key)
				}
			}
		default:
			if raw.Headers != nil {
				ds.Add(file, doc.Pos("/headers"), CodeBadManifest, "headers are for a server reached at url:; this one is started from command:")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(raw.Env)) {
			switch {
			case k == "PATH":
				ds.Add(file, doc.Pos(schemas.Pointer("env", k)), CodeBadManifest, "env: PATH is the worker's own; the command is looked up in it")
			case !envName.MatchString(k):
				ds.Add(file, doc.Pos(schemas.Pointer("env", k)), CodeBadManifest, "env: %q: want a variable's name in capitals, digits and _", k)
			}
		}
		if abs, err := filepath.Abs(m.MCP.Dir); err == nil {
			m.MCP.Dir = abs
		}
		for _, f := range raw.CommandFiles {
			if !filepath.IsAbs(f) {
				f = filepath.Join(m.MCP.Dir, f)
			}
			m.MCP.Files = append(m.MCP.Files, f)
		}
	}
	if m.MCP == nil {
		for key, set := range map[string]bool{"command": raw.Command != nil, "command_files": raw.CommandFiles != nil, "env": raw.Env != nil,
			"url": raw.URL != "", "headers": raw.Headers != nil} {
			if set {
				ds.Add(file, doc.Pos("/"+key), CodeBadManifest, "%s is for run: mcp only; this worker runs %s", key, raw.Run)
			}
		}
	}
	deref := func(b *bool) bool { return b != nil && *b }
	// Tools in name order, so that the digest does not depend on the
	// order of a map.
	for _, name := range slices.Sorted(maps.Keys(raw.Tools)) {
		rt := raw.Tools[name]
		ptr := schemas.Pointer("tools", name)
		if m.MCP != nil {
			for key, set := range map[string]bool{"input_schema": rt.InputSchema != "", "output_schema": rt.OutputSchema != "", "trusted_network": rt.Trusted} {
				if set {
					ds.Add(file, doc.Pos(ptr+"/"+key), CodeBadRule, "tool %s: %s: an MCP server's tools/list gives its tools' schemas and it has no network; leave it out", name, key)
				}
			}
			if m.MCP.URL != "" && rt.Egress != nil && !*rt.Egress {
				ds.Add(file, doc.Pos(ptr+"/egress"), CodeBadRule, "tool %s: egress: false: the tools of a server reached at url: send their arguments to it", name)
			}
			if _, err := path.Match(name, ""); err != nil {
				ds.Add(file, doc.Pos(ptr), CodeBadRule, "tool pattern %q: %v", name, err)
			}
			m.MCP.Rules = append(m.MCP.Rules, ToolRule{Pattern: name, Description: rt.Description, Privileged: rt.Privileged,
				Idempotent: rt.Idempotent, Approvable: rt.Approvable, Egress: rt.Egress, OutputLabel: rt.OutputLabel, Clearance: rt.Clearance, Pos: doc.Pos(ptr)})
			continue
		}
		if !toolName.MatchString(name) {
			ds.Add(file, doc.Pos(ptr), CodeBadRule, "tool %q: patterns (* and ?) are for run: mcp only; name the tool", name)
			continue
		}
		t := &Tool{Name: m.Worker + "." + name, Description: rt.Description, Privileged: deref(rt.Privileged),
			Idempotent: rt.Idempotent, Approvable: deref(rt.Approvable), Egress: deref(rt.Egress), TrustedNetwork: rt.Trusted, Clearance: ifc.NewClearance(ifc.Trusted)}
		if t.Input, err = schema(rt.InputSchema); err != nil {
			ds.Add(file, doc.Pos(ptr+"/input_schema"), CodeBadSchema, "tool %s: input_schema: %v", name, err)
		}
		if rt.OutputSchema != "" {
			if t.Output, err = schema(rt.OutputSchema); err != nil {
				ds.Add(file, doc.Pos(ptr+"/output_schema"), CodeBadSchema, "tool %s: output_schema: %v", name, err)
			}
		}
		switch {
		case rt.OutputLabel != nil:
			t.OutputLabel = *rt.OutputLabel
		case wasm:
			// Third-party code: untrusted unless the manifest says otherwise.
			t.OutputLabel = ifc.UntrustedFrom()
		default:
			t.OutputLabel = ifc.TrustedFrom()
		}
		t.OutputLabel = t.OutputLabel.WithSources(ifc.ToolSource(t.Name))
		if rt.Clearance != nil {
			t.Clearance = *rt.Clearance
		}
		m.Tools[name] = t
	}
	lim := Limits{Timeout: DefaultTimeout, Memory: DefaultMemory, MaxOutput: DefaultMaxOutput}
	if s := raw.Limits.Timeout; s != "" {
		if lim.Timeout, err = time.ParseDuration(s); err != nil || lim.Timeout <= 0 {
			ds.Add(file, doc.Pos("/limits/timeout"), CodeBadLimit, "limits.timeout %q: want a positive duration such as 10s", s)
		}
	}
	if s := raw.Limits.Memory; s != "" {
		if lim.Memory, err = ParseSize(s); err != nil {
			ds.Add(file, doc.Pos("/limits/memory"), CodeBadLimit, "limits.memory: %v", err)
		}
	}
	if s := raw.Limits.MaxOutput; s != "" {
		if lim.MaxOutput, err = ParseSize(s); err != nil {
			ds.Add(file, doc.Pos("/limits/max_output"), CodeBadLimit, "limits.max_output: %v", err)
		}
	}
	m.Limits = lim
	m.Digest = hex.EncodeToString(digest.Sum(nil))
	if err := ds.Err(); err != nil {
		return nil, err
	}
	if m.MCP != nil && discovered {
		if err := m.discovered(doc, dir); err != nil {
			return nil, err
		}
	}
	if m.Grants.Files != nil {
		m = m.withFileSecrecy()
	}
	return m, nil
}

// loadSchema reads a tool's schema, and returns the bytes it read from
// dir (none for a shipped schema).
func loadSchema(dir fs.FS, path string) (*schemas.Schema, []byte, error) {
	if dir != nil {
		if b, err := fs.ReadFile(dir, filepath.ToSlash(path)); err == nil {
			var doc any
			if err := json.Unmarshal(b, &doc); err != nil {
				return nil, b, fmt.Errorf("%s: %w", path, err)
			}
			sch, err := schemas.Compile(doc)
			return sch, b, err
		}
	}
	if rest, ok := strings.CutPrefix(filepath.ToSlash(path), "schemas/"); ok {
		sch, err := schemas.Load(rest)
		return sch, nil, err
	}
	return nil, nil, fmt.Errorf("no schema file %q", path)
}

// envName is what a variable an MCP manifest's env sets may be named.
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

var sizeRE = regexp.MustCompile(`^([0-9]+)(KiB|MiB|GiB)$`)

// ParseSize reads sizes such as "64KiB", "1MiB", "2GiB".
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number and KiB, MiB or GiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	shift := map[string]int{"KiB": 10, "MiB": 20, "GiB": 30}[m[2]]
	return n << shift, nil
}

// Tool returns the tool with the given short name.
func (m *Manifest) Tool(name string) (*Tool, bool) {
	t, ok := m.Tools[name]
	return t, ok
}

// ToolNames returns the short tool names, sorted.
func (m *Manifest) ToolNames() []string {
	out := make([]string, 0, len(m.Tools))
	for n := range m.Tools {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// WithGrants returns a copy of m with a deployment's grants added to the
// manifest's own. A deployment may set a file root only where the manifest
// has none.
func (m *Manifest) WithGrants(g Grants) (*Manifest, error) {
	c := *m
	c.Grants.Net = slices.Concat(m.Grants.Net, g.Net)
	c.Grants.Secrets = slices.Concat(m.Grants.Secrets, g.Secrets)
	if g.Files != nil {
		if m.Grants.Files != nil {
			return nil, fmt.Errorf("worker %s: the manifest already sets a file root", m.Worker)
		}
		f := *g.Files
		c.Grants.Files = &f
		return c.withFileSecrecy(), nil
	}
	return &c, nil
}

// Permissions is what a worker's NATS user may do, as neutral data; the
// orchestrator turns it into nats-server permissions.
type Permissions struct {
	// Subscribe lists the subjects the worker may subscribe to.
	Subscribe []string
	// Publish lists the subjects the worker may publish requests on.
	Publish []string
	// Responses lets the worker answer each request it received, once,
	// within ResponseTTL.
	Responses   bool
	ResponseTTL time.Duration
}

// Permissions derives the worker's NATS permissions: subscribe only to its
// own tool subjects and its own reply inbox; publish only replies to
// requests it received, plus requests on its own egress subject when it has
// a network grant. Nothing else.
func (m *Manifest) Permissions(s schemas.Subjects) Permissions {
	p := Permissions{
		Subscribe:   []string{s.ToolWildcard(m.Worker), s.Inbox(m.Worker) + ".>"},
		Publish:     []string{},
		Responses:   true,
		ResponseTTL: m.Limits.Timeout + 5*time.Second,
	}
	if len(m.Grants.Net) > 0 {
		p.Publish = append(p.Publish, s.Egress(m.Worker))
	}
	return p
}

// discovered fills in the tools of a run: mcp manifest from the cache
// beside it.
func (m *Manifest) discovered(doc *schemas.Document, dir fs.FS) error {
	var ds schemas.Diagnostics
	pos := doc.Pos("/run")
	hint := fmt.Sprintf("sluice worker discover --manifest %s", m.File)
	var d *Discovery
	err := ErrNotDiscovered
	if dir != nil {
		d, err = ReadDiscovery(dir, filepath.Base(m.MCP.Cache))
	}
	switch {
	case errors.Is(err, ErrNotDiscovered):
		ds.Add(m.File, pos, CodeNotDiscovered, "worker %s: its MCP server's tools were never discovered (no %s): run `%s`",
			m.Worker, filepath.Base(m.MCP.Cache), hint)
		return ds.Err()
	case err != nil:
		ds.Add(m.File, pos, CodeStale, "worker %s: discovered tools: %v: run `%s`", m.Worker, err, hint)
		return ds.Err()
	case d.Manifest != m.MCP.Hash:
		ds.Add(m.File, pos, CodeStale, "worker %s: the tools in %s were discovered for another version of this manifest (server %s %s): run `%s` and review them",
			m.Worker, filepath.Base(m.MCP.Cache), d.Server.Name, d.Server.Version, hint)
		return ds.Err()
	}
	tools, names, skipped, err := m.withDiscovery(d)
	if err != nil {
		ds.Add(m.File, pos, CodeStale, "worker %s: %s: %v", m.Worker, filepath.Base(m.MCP.Cache), err)
		return ds.Err()
	}
	if len(tools) == 0 {
		ds.Add(m.File, doc.Pos("/tools"), CodeBadRule, "worker %s: no tool the server lists matches the manifest's tools (the server lists: %s)",
			m.Worker, strings.Join(discoveredNames(d), ", "))
		return ds.Err()
	}
	m.Tools, m.skipped = tools, skipped
	m.MCP.Names = names
	m.Discovery = d
	return nil
}

func discoveredNames(d *Discovery) []string {
	var out []string
	for _, t := range d.Tools {
		out = append(out, t.Name)
	}
	return out
}
