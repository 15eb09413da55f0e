// Package config reads sluice.yaml, the one configuration file of a
// deployment: the bus, the state directory, the policies, the workers with
// this deployment's grants and settings, and where secrets come from.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
)

// FileName is the configuration file looked for in the current directory.
const FileName = "sluice.yaml"

// Embedded is the value of `nats` that runs the NATS server in-process.
const Embedded = "embedded"

// Config is a loaded sluice.yaml, with every path made absolute.
type Config struct {
	// File is the file it came from; empty for the built-in defaults.
	File string
	// Dir is the directory relative paths are resolved against, and the
	// workers' working directory.
	Dir string
	// NATS is "embedded" or the URL of an external server or cluster.
	NATS string
	// ExternalNATS says how to use the external server; nil with the
	// embedded one.
	ExternalNATS *ExternalNATS
	// State is the state directory.
	State string
	// Deployment is the deployment's name: the first token of its
	// subjects and part of the name of each of its JetStream streams and
	// buckets (schemas.StoreName), so that deployments sharing one NATS
	// account cannot see each other's; default "sluice".
	Deployment string
	// Prefix of every subject: the deployment's name, or subject_prefix
	// for the default deployment; default "sluice".
	Prefix string
	// Policies are the user's policy files, loaded after the shipped default.
	Policies []string
	// PolicyPos is where each of Policies is named in the file.
	PolicyPos []schemas.Pos
	// Workers to run.
	Workers []Worker
	// Secrets by name.
	Secrets map[string]Secret
	// OTLPEndpoint is telemetry.otlp_endpoint: the OTLP/HTTP receiver
	// traces go to when no OTEL_EXPORTER_OTLP_* endpoint is set; "" for none.
	OTLPEndpoint string
	// Notify are the notifiers told of every held call.
	Notify []Notifier
	// Audit is how much of the audit log to keep (audit:); zero keeps
	// every record.
	Audit AuditRetention
}

// AuditRetention is `audit`: records older than MaxAge, and the oldest
// records while the log holds more than MaxSize bytes, are dropped, up to
// a signed checkpoint. Zero: no limit.
type AuditRetention struct {
	MaxAge  time.Duration
	MaxSize int64
}

// Notifier is one entry of `notify`: a service told that a call waits for
// a person. Its URL or token may come from a secret (URLSecret,
// TokenSecret name entries of Secrets).
type Notifier struct {
	Kind, URL, URLSecret, TokenSecret, Room string
	Pos                                     schemas.Pos
}

// Worker is one entry of `workers`.
type Worker struct {
	// Manifest is "builtin:NAME" or an absolute path.
	Manifest string
	// Grants of this deployment, added to the manifest's own.
	Grants capabilities.Grants
	// Config is the worker's own settings, as JSON ("{}" when none).
	Config json.RawMessage
	// Replicas of the worker; at least 1.
	Replicas int
	// Pos is where the entry is in the file.
	Pos schemas.Pos
	// Files are the files its config names that must exist before it
	// starts (an llm worker's script), absolute; see [Config.CheckFiles].
	Files []File
}

// File is a file a worker's config names.
type File struct {
	// Key is the config key, as a path from the document's root
	// ("workers.2.config.script"); Path is absolute.
	Key, Path string
	Pos       schemas.Pos
}

// Codes of sluice.yaml's own checks.
const (
	// CodeMissingFile: a file a worker's config names does not exist.
	CodeMissingFile = "config_missing_file"
	// CodeDeploymentPrefix: subject_prefix given with a named deployment.
	CodeDeploymentPrefix = "config_deployment_prefix"
)

// Secret says where a secret's value comes from: an environment variable
// or a file (which must not be readable by group or others).
type Secret struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// Default is the configuration used when there is no sluice.yaml: every
// built-in worker with its defaults, state under dir/.sluice.
func Default(dir string) *Config {
	c := &Config{Dir: dir, NATS: Embedded, State: filepath.Join(dir, ".sluice"), Deployment: schemas.DefaultDeployment, Prefix: schemas.DefaultPrefix}
	for _, name := range capabilities.Builtins() {
		w := Worker{Manifest: capabilities.BuiltinPrefix + name, Config: json.RawMessage("{}"), Replicas: 1}
		if name == "files" {
			// The files worker needs a root: by default, one of its own
			// under the state directory.
			w.Grants.Files = &capabilities.FileGrant{Root: filepath.Join(c.State, "files"), Write: true}
		}
		c.Workers = append(c.Workers, w)
	}
	return c
}

// Find returns the configuration file to use: explicit when given, else
// sluice.yaml in dir when it exists, else "" (the defaults).
func Find(explicit, dir string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	p := filepath.Join(dir, FileName)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return "", nil
}

// Load reads and checks a configuration file. Every problem is reported
// with its position.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, filepath.Dir(abs))
}

// Parse checks a configuration; relative paths are resolved against dir.
func Parse(file string, src []byte, dir string) (*Config, error) {
	doc, ds := schemas.ParseYAML(file, src)
	if err := ds.Err(); err != nil {
		return nil, err
	}
	raw, err := decode(file, doc)
	if err != nil {
		return nil, err
	}
	c := &Config{File: file, Dir: dir, Deployment: raw.Deployment, Prefix: raw.Prefix, Secrets: raw.Secrets, OTLPEndpoint: raw.Telemetry.OTLPEndpoint}
	c.NATS, c.ExternalNATS = parseNATS(file, doc, raw.NATS, dir, &ds)
	c.deployment(doc, &ds)
	c.State = abs(dir, raw.State, ".sluice")
	for i, p := range raw.Policies {
		c.Policies = append(c.Policies, abs(dir, p, ""))
		c.PolicyPos = append(c.PolicyPos, doc.Pos(schemas.Pointer("policies", i)))
	}
	if raw.Workers == nil {
		c.Workers = Default(dir).Workers
	}
	seen := map[string]schemas.Pos{}
	for i, w := range raw.Workers {
		if cw, ok := c.worker(doc, i, w, seen, &ds); ok {
			c.Workers = append(c.Workers, cw)
		}
	}
	for i, n := range raw.Notify {
		c.notifier(doc, i, n, &ds)
	}
	c.Audit = parseRetention(file, doc, raw.Audit.MaxAge, strings.Trim(string(raw.Audit.MaxSize), `"`), &ds)
	c.absSecretFiles()
	if err := ds.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// deployment settles the deployment's name and its subjects' prefix. A
// named deployment's subjects start with its name: subject_prefix, kept
// for files written before deployments had names, applies to the default
// deployment only, and naming both is an error.
func (c *Config) deployment(doc *schemas.Document, ds *schemas.Diagnostics) {
	if c.Deployment == "" {
		c.Deployment = schemas.DefaultDeployment
	}
	switch {
	case c.Prefix == "":
		c.Prefix = c.Deployment
		if c.Deployment == schemas.DefaultDeployment {
			c.Prefix = schemas.DefaultPrefix
		}
	case c.Deployment != schemas.DefaultDeployment:
		ds.Add(c.File, doc.Pos("/subject_prefix"), CodeDeploymentPrefix,
			"subject_prefix %s with deployment %s: a named deployment's subjects start with its name; remove subject_prefix", c.Prefix, c.Deployment)
	}
}

// notifier checks one entry of `notify`: a URL or a secret that holds it,
// secrets that exist, and a Matrix room with its access token.
func (c *Config) notifier(doc *schemas.Document, i int, n rawNotifier, ds *schemas.Diagnostics) {
	ptr := schemas.Pointer("notify", i)
	bad := func(key, format string, a ...any) {
		at := ptr
		if key != "" {
			at += "/" + key
		}
		ds.Add(c.File, doc.Pos(at), "config_bad_notifier", format, a...)
	}
	if (n.URL == "") == (n.URLSecret == "") {
		bad("", "notify %s: give url or url_secret (a secret that holds the URL, as a Slack webhook's does), one of the two", n.Kind)
	}
	for key, name := range map[string]string{"url_secret": n.URLSecret, "token_secret": n.TokenSecret} {
		if _, ok := c.Secrets[name]; name != "" && !ok {
			bad(key, "notify %s: no secret %q (add it under secrets:)", n.Kind, name)
		}
	}
	if n.Kind == "matrix" && (n.Room == "" || n.TokenSecret == "") {
		bad("", "notify matrix: give room (the room id, !id:server) and token_secret (the access token's secret)")
	}
	if n.Kind != "matrix" && n.Room != "" {
		bad("room", "notify %s: room is for matrix only", n.Kind)
	}
	c.Notify = append(c.Notify, Notifier{Kind: n.Kind, URL: n.URL, URLSecret: n.URLSecret, TokenSecret: n.TokenSecret,
		Room: n.Room, Pos: doc.Pos(ptr)})
}

// rawConfig is sluice.yaml as written, once checked against its schema.
type rawConfig struct {
	NATS       json.RawMessage   `json:"nats"`
	State      string            `json:"state"`
	Deployment string            `json:"deployment"`
	Prefix     string            `json:"subject_prefix"`
	Policies   []string          `json:"policies"`
	Workers    []rawWorker       `json:"workers"`
	Secrets    map[string]Secret `json:"secrets"`
	Telemetry  struct {
		OTLPEndpoint string `json:"otlp_endpoint"`
	} `json:"telemetry"`
	Notify []rawNotifier `json:"notify"`
	Audit  struct {
		MaxAge  string          `json:"max_age"`
		MaxSize json.RawMessage `json:"max_size"`
	} `json:"audit"`
}

type rawNotifier struct {
	Kind        string `json:"kind"`
	URL         string `json:"url"`
	URLSecret   string `json:"url_secret"`
	TokenSecret string `json:"token_secret"`
	Room        string `json:"room"`
}

// rawWorker is one entry of `workers` as written.
type rawWorker struct {
	Manifest string              `json:"manifest"`
	Grants   capabilities.Grants `json:"grants"`
	Config   json.RawMessage     `json:"config"`
	Replicas int                 `json:"replicas"`
}

// decode checks doc against the schema of sluice.yaml and decodes it.
func decode(file string, doc *schemas.Document) (rawConfig, error) {
	var raw rawConfig
	sch, err := schemas.Load("config.json")
	if err != nil {
		return raw, err
	}
	if ds := doc.Validate(sch); ds.Err() != nil {
		return raw, ds.Err()
	}
	b, _ := json.Marshal(doc.Value)
	if err := json.Unmarshal(b, &raw); err != nil {
		return raw, fmt.Errorf("config %s: %w", file, err)
	}
	return raw, nil
}

// worker checks the entry w at index i of `workers`: its manifest loads,
// its worker is not configured twice (seen holds those configured so far,
// with their positions), its grants apply to the manifest and its config
// fits the worker's kind. Every problem is added to ds; ok is false when
// the entry cannot be used at all.
func (c *Config) worker(doc *schemas.Document, i int, w rawWorker, seen map[string]schemas.Pos, ds *schemas.Diagnostics) (Worker, bool) {
	ptr := schemas.Pointer("workers", i)
	ref := w.Manifest
	if !strings.HasPrefix(ref, capabilities.BuiltinPrefix) {
		ref = abs(c.Dir, ref, "")
	}
	m, err := capabilities.Load(ref)
	if err != nil {
		if mds, ok := schemas.AsDiagnostics(err); ok && (mds[0].File != ref || mcpDiscovery(mds)) {
			*ds = append(*ds, mds...)
		} else {
			ds.Add(c.File, doc.Pos(ptr+"/manifest"), capabilities.CodeNotFound, "manifest %s: %v", w.Manifest, err)
		}
		return Worker{}, false
	}
	if prev, dup := seen[m.Worker]; dup {
		ds.Add(c.File, doc.Pos(ptr), "config_duplicate_worker", "worker %q is configured twice (first at line %d); use replicas to run more", m.Worker, prev.Line)
		return Worker{}, false
	}
	seen[m.Worker] = doc.Pos(ptr)
	if w.Grants.Files != nil {
		w.Grants.Files.Root = abs(c.Dir, w.Grants.Files.Root, "")
	}
	if _, err := m.WithGrants(w.Grants); err != nil {
		ds.Add(c.File, doc.Pos(ptr+"/grants"), "config_bad_grant", "%v", err)
	}
	cfg := w.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	files, cds := checkWorkerConfig(doc, ptr+"/config", m, c.Dir)
	*ds = append(*ds, cds...)
	return Worker{Manifest: ref, Grants: w.Grants, Config: cfg, Replicas: max(w.Replicas, 1), Pos: doc.Pos(ptr), Files: files}, true
}

// absSecretFiles makes the path of every secret read from a file absolute.
func (c *Config) absSecretFiles() {
	for name, s := range c.Secrets {
		if s.File != "" {
			s.File = abs(c.Dir, s.File, "")
			c.Secrets[name] = s
		}
	}
}

// checkWorkerConfig checks a worker's config block against the schema of
// its kind (schemas/workers/<kind>.config.json: each built-in worker's
// name, or wasm), and returns the files it names that must exist. The
// worker checks its config again when it starts.
func checkWorkerConfig(doc *schemas.Document, ptr string, m *capabilities.Manifest, dir string) ([]File, schemas.Diagnostics) {
	kind, ok := strings.CutPrefix(m.Run, capabilities.BuiltinPrefix)
	if !ok {
		if !strings.HasPrefix(m.Run, "wasm:") {
			return nil, nil
		}
		kind = "wasm"
	}
	sch, err := schemas.Load("workers/" + kind + ".config.json")
	if err != nil {
		return nil, nil // no such built-in worker: the manifest says so
	}
	if ds := doc.ValidateAt(ptr, sch); len(ds) > 0 {
		return nil, ds
	}
	v, _ := doc.At(ptr)
	given, _ := v.(map[string]any)
	root, _ := sch.Doc().(map[string]any)
	props, _ := root["properties"].(map[string]any)
	var files []File
	for _, key := range slices.Sorted(maps.Keys(props)) {
		p, _ := props[key].(map[string]any)
		path, isString := given[key].(string)
		if p["x-sluice-file"] != "exists" || !isString {
			continue
		}
		kptr := ptr + "/" + key
		files = append(files, File{Key: strings.ReplaceAll(strings.TrimPrefix(kptr, "/"), "/", "."), Path: abs(dir, path, ""), Pos: doc.Pos(kptr)})
	}
	return files, nil
}

// CheckFiles reports each policy file and each file a worker's config
// names that does not exist, at its position: a worker would fail on it
// only once started.
func (c *Config) CheckFiles() error {
	var ds schemas.Diagnostics
	for i, p := range c.Policies {
		var pos schemas.Pos
		if i < len(c.PolicyPos) {
			pos = c.PolicyPos[i]
		}
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			ds.Add(c.File, pos, CodeMissingFile, "policies.%d: no policy file %s (paths in %s are relative to its directory)", i, p, filepath.Base(c.File))
		} else if err != nil {
			ds.Add(c.File, pos, CodeMissingFile, "policies.%d: %v", i, err)
		}
	}
	for _, w := range c.Workers {
		for _, f := range w.Files {
			_, err := os.Stat(f.Path)
			switch {
			case err == nil:
			case errors.Is(err, fs.ErrNotExist):
				ds.Add(c.File, f.Pos, CodeMissingFile, "%s: no file %s (paths in a worker's config are relative to the directory of %s)", f.Key, f.Path, filepath.Base(c.File))
			default:
				ds.Add(c.File, f.Pos, CodeMissingFile, "%s: %v", f.Key, err)
			}
		}
	}
	return ds.Err()
}

// mcpDiscovery reports whether ds are about an MCP server's discovered
// tools (missing or stale): they point into the manifest, with the
// command that fixes them.
func mcpDiscovery(ds schemas.Diagnostics) bool {
	return slices.ContainsFunc(ds, func(d schemas.Diagnostic) bool {
		return d.Code == capabilities.CodeNotDiscovered || d.Code == capabilities.CodeStale
	})
}

func abs(dir, p, def string) string {
	if p == "" {
		p = def
	}
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Manifests loads the manifest of every configured worker, with this
// deployment's grants added, by worker name.
func (c *Config) Manifests() (map[string]*capabilities.Manifest, error) {
	out := map[string]*capabilities.Manifest{}
	for _, w := range c.Workers {
		m, err := capabilities.Load(w.Manifest)
		if err != nil {
			return nil, err
		}
		if m, err = m.WithGrants(w.Grants); err != nil {
			return nil, err
		}
		out[m.Worker] = m
	}
	return out, nil
}

// WorkerNames lists the configured workers' names, sorted.
func WorkerNames(ms map[string]*capabilities.Manifest) []string {
	out := make([]string, 0, len(ms))
	for n := range ms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
