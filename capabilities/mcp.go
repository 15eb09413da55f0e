package capabilities

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// RunMCP is the run of a manifest whose tools an MCP server serves.
const RunMCP = "mcp"

// FilesRootArg in an MCP command stands for the file grant's root.
const FilesRootArg = "{{files.root}}"

// Codes of the diagnostics about an MCP server's discovered tools.
const (
	CodeNotDiscovered = "manifest_mcp_not_discovered"
	CodeStale         = "manifest_mcp_stale"
	CodeBadRule       = "manifest_mcp_bad_rule"
)

// MCP is how a run: mcp worker starts its server, and what its manifest
// says about the server's tools.
type MCP struct {
	// Command is the server's argv, as the manifest gives it.
	Command []string
	// Dir is the manifest's directory: the command runs there, and
	// relative paths in Files are taken from it.
	Dir string
	// Files are the paths the command reads to run (its installation),
	// absolute; the server may read them, and nothing else but its file
	// grant and the system's libraries.
	Files []string
	// Env is what the manifest adds to the server's environment, which
	// otherwise holds PATH alone; a value's {{files.root}} stands for the
	// file grant's root. None when missing.
	Env map[string]string
	// URL is where a streamable HTTP server is reached, through the
	// egress broker: its host:port must be in the worker's grants.net.
	// Empty for a server started from Command.
	URL string
	// Headers are sent with every request to URL; a {{secret:NAME}} in a
	// value is filled in by the broker, for the hosts the secret's grant
	// names.
	Headers map[string]string
	// Names maps each served tool's short name to the name the server
	// lists it by (get_sum for get-sum); filled in from the discovered
	// tools.
	Names map[string]string
	// Rules are the manifest's tools: entries, by name or glob pattern.
	Rules []ToolRule
	// Cache is the path of the discovered tools (see [Discovery]).
	Cache string
	// Hash identifies the manifest's text: a cache written for another
	// text is stale.
	Hash string
}

// ToolRule is what a manifest says about the MCP tools whose names match
// Pattern. A nil field is left to the server's annotations, read as
// [DecideMCPTool] says.
type ToolRule struct {
	Pattern     string
	Description string
	Privileged  *bool
	// Idempotent is the manifest's word only: a server's idempotentHint
	// is not read.
	Idempotent  bool
	Approvable  *bool
	Egress      *bool
	OutputLabel *ifc.Label
	Clearance   *ifc.Clearance
	Pos         schemas.Pos
}

// Annotations are the hints an MCP server gives about a tool. They are
// the server's word, not the user's: [DecideMCPTool] reads a missing hint
// as the worst case.
type Annotations struct {
	ReadOnly    *bool `json:"readOnlyHint,omitempty"`
	Destructive *bool `json:"destructiveHint,omitempty"`
	OpenWorld   *bool `json:"openWorldHint,omitempty"`
}

// Discovery is what an MCP server listed when it was last asked, kept
// beside its manifest (NAME.tools.json for NAME.yaml) so that lint, the
// orchestrator and the worker know its tools without starting it.
type Discovery struct {
	// Manifest is the [MCP.Hash] of the manifest it was discovered for.
	Manifest string `json:"manifest"`
	// Server is the name and version the server reported.
	Server ServerInfo       `json:"server"`
	Tools  []DiscoveredTool `json:"tools"`
}

// ServerInfo is the implementation an MCP server reports.
type ServerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DiscoveredTool is one tool as the server listed it.
type DiscoveredTool struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema"`
	OutputSchema json.RawMessage `json:"output_schema,omitempty"`
	Annotations  *Annotations    `json:"annotations,omitempty"`
}

// CachePath is where the discovered tools of the manifest at file live.
func CachePath(file string) string {
	return strings.TrimSuffix(file, filepath.Ext(file)) + ".tools.json"
}

// toolName is what a tool's short name may be; a server's tool with
// another name is not served.
var toolName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ToolName returns the Sluice short name of a tool an MCP server lists:
// its name with each '-' written '_' (get-sum is get_sum), and whether
// that is a name a Sluice tool can have (lowercase letters, digits and
// _). The manifest's rules and the flows use this name.
func ToolName(server string) (string, bool) {
	name := strings.ReplaceAll(server, "-", "_")
	return name, toolName.MatchString(name)
}

// HostPort is the host:port of URL, the port filled in from its scheme.
func (m *MCP) HostPort() (string, error) {
	u, err := url.Parse(m.URL)
	if err != nil {
		return "", err
	}
	port := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	switch {
	case port == "":
		return "", fmt.Errorf("%q: want an http or https URL", m.URL)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q: no host", m.URL)
	case u.User != nil:
		return "", fmt.Errorf("%q: a URL may not hold user info; send credentials in headers, as {{secret:NAME}}", m.URL)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// Decide is [DecideMCPTool] for this server: the tools of a server
// reached at URL are egress, whatever the manifest and the hints say, as
// every call sends its arguments there.
func (m *MCP) Decide(name string, r *ToolRule, a *Annotations) *Tool {
	t := DecideMCPTool(name, r, a)
	if m.URL != "" {
		t.Egress = true
	}
	return t
}

// ServerName is the name the server lists the served tool short by.
func (m *MCP) ServerName(short string) string {
	if n, ok := m.Names[short]; ok {
		return n
	}
	return short
}

// Rule returns the manifest's rule for the tool name: an exact name
// first, else the longest matching pattern (ties: the first in byte
// order). A tool no rule matches is not granted.
func (m *MCP) Rule(name string) (*ToolRule, bool) {
	var best *ToolRule
	for i := range m.Rules {
		r := &m.Rules[i]
		if r.Pattern == name {
			return r, true
		}
		if ok, _ := path.Match(r.Pattern, name); !ok {
			continue
		}
		if best == nil || len(r.Pattern) > len(best.Pattern) || (len(r.Pattern) == len(best.Pattern) && r.Pattern < best.Pattern) {
			best = r
		}
	}
	return best, best != nil
}

// DecideMCPTool decides the flags and labels of one MCP tool. The
// manifest decides: every field its rule sets is taken as it is. Where it
// is silent, the server's annotations supply a default, and a missing
// hint counts as the worst case:
//
//   - privileged unless readOnlyHint is true (and destructiveHint does not
//     contradict it);
//   - egress unless openWorldHint is false;
//   - the output is untrusted: no hint can make what a server says
//     trusted;
//   - idempotent only when the manifest says so (a server's
//     idempotentHint is its word, and a call sent twice is the user's
//     loss);
//   - approvable only when the manifest says so; the clearance is trusted
//     with no secrecy unless the manifest says otherwise.
//
// The output label always carries the source tool:NAME.
func DecideMCPTool(name string, r *ToolRule, a *Annotations) *Tool {
	if a == nil {
		a = &Annotations{}
	}
	is := func(b *bool, v bool) bool { return b != nil && *b == v }
	t := &Tool{Name: name, Privileged: !is(a.ReadOnly, true) || is(a.Destructive, true), Egress: !is(a.OpenWorld, false),
		OutputLabel: ifc.UntrustedFrom(), Clearance: ifc.NewClearance(ifc.Trusted)}
	if r != nil {
		if r.Privileged != nil {
			t.Privileged = *r.Privileged
		}
		t.Idempotent = r.Idempotent
		if r.Approvable != nil {
			t.Approvable = *r.Approvable
		}
		if r.Egress != nil {
			t.Egress = *r.Egress
		}
		if r.OutputLabel != nil {
			t.OutputLabel = *r.OutputLabel
		}
		if r.Clearance != nil {
			t.Clearance = *r.Clearance
		}
	}
	t.OutputLabel = t.OutputLabel.WithSources(ifc.ToolSource(name))
	return t
}

// ErrNotDiscovered means an MCP manifest has no cache of its server's
// tools beside it.
var ErrNotDiscovered = errors.New("the server's tools were never discovered")

// ReadDiscovery reads the cache at path; it returns ErrNotDiscovered when
// there is none.
func ReadDiscovery(fsys fs.FS, name string) (*Discovery, error) {
	b, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotDiscovered
	}
	if err != nil {
		return nil, err
	}
	var d Discovery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

// Servable returns the Sluice short name of each tool d lists that can be
// served, by the server's name: a name a Sluice tool can have, and no
// other tool of the server has the same one (get-sum and get_sum are
// both left out, as neither could be told from the other).
func Servable(d *Discovery) map[string]string {
	count := map[string]int{}
	for _, dt := range d.Tools {
		if name, ok := ToolName(dt.Name); ok {
			count[name]++
		}
	}
	out := map[string]string{}
	for _, dt := range d.Tools {
		if name, ok := ToolName(dt.Name); ok && count[name] == 1 {
			out[dt.Name] = name
		}
	}
	return out
}

// WithDiscovery returns the tools the manifest grants of those the server
// listed, each decided by [DecideMCPTool] and with its schemas. Tools no
// rule matches, or whose names cannot be Sluice tools', are left out and
// named in skipped.
func (m *Manifest) withDiscovery(d *Discovery) (tools map[string]*Tool, names map[string]string, skipped []string, err error) {
	tools, names = map[string]*Tool{}, map[string]string{}
	servable := Servable(d)
	for _, dt := range d.Tools {
		short, ok := servable[dt.Name]
		var r *ToolRule
		if ok {
			r, ok = m.MCP.Rule(short)
		}
		if !ok {
			skipped = append(skipped, dt.Name)
			continue
		}
		names[short] = dt.Name
		t := m.MCP.Decide(m.Worker+"."+short, r, dt.Annotations)
		t.Description, t.DescriptionFromServer = dt.Description, dt.Description != ""
		if r.Description != "" {
			t.Description, t.DescriptionFromServer = r.Description, false
		}
		t.SchemasFromServer = true
		if t.Input, err = compileRaw(dt.InputSchema); err != nil {
			return nil, nil, nil, fmt.Errorf("tool %s: input schema: %w", dt.Name, err)
		}
		if len(dt.OutputSchema) > 0 {
			if t.Output, err = compileRaw(dt.OutputSchema); err != nil {
				return nil, nil, nil, fmt.Errorf("tool %s: output schema: %w", dt.Name, err)
			}
		} else {
			// Without structured content the output is the text content.
			t.Output = textOutput
		}
		tools[short] = t
	}
	return tools, names, skipped, nil
}

// textOutput is the output of an MCP tool that declares no output schema.
var textOutput = func() *schemas.Schema {
	s, err := schemas.Compile(map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}},
		"required": []any{"text"}, "additionalProperties": false})
	if err != nil {
		panic(err)
	}
	return s
}()

func compileRaw(b json.RawMessage) (*schemas.Schema, error) {
	var doc any
	if len(b) == 0 {
		doc = map[string]any{"type": "object"}
	} else if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return schemas.Compile(doc)
}

// Skipped lists the tools the server listed that the manifest does not
// grant (no rule matches, or a name a Sluice tool cannot have).
func (m *Manifest) Skipped() []string { return slices.Clone(m.skipped) }

func hashOf(src []byte) string {
	h := sha256.Sum256(src)
	return hex.EncodeToString(h[:])
}

// LoadMCP reads a run: mcp manifest without its discovered tools: its
// Tools are empty. It is what discovery starts from.
func LoadMCP(file string) (*Manifest, error) {
	return load(file, false)
}
