package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc/policy"
	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/schemas"
)

// Effective is a deployment as it runs: the configuration, the manifests
// of its workers with the deployment's grants, the policy files it loads
// (the shipped default first) with the set compiled from them, and the
// fingerprint of all of it.
type Effective struct {
	Deployment  *config.Config
	Manifests   map[string]*capabilities.Manifest
	PolicyFiles []policy.File
	// Policy is nil when the policy files do not load (LoadEffective).
	Policy *policy.Set
	// Fingerprint is Fingerprint of the above.
	Fingerprint string
	// parts is what Fingerprint hashed, as it was read.
	parts parts
}

// LoadEffective loads the manifests and policy files of a deployment and
// compiles its policy. When the policy files were read but do not compile,
// it returns their diagnostics with an Effective whose Policy is nil and
// whose Fingerprint says what was read, so that a refused reload can be
// recorded with it.
func LoadEffective(d *config.Config) (*Effective, error) {
	ms, err := d.Manifests()
	if err != nil {
		return nil, err
	}
	// The files worker config blocks name (an llm script) must exist
	// before anything starts.
	if err := d.CheckFiles(); err != nil {
		return nil, err
	}
	files, err := readPolicyFiles(d)
	if err != nil {
		return nil, err
	}
	p := fingerprintParts(d, ms, files)
	eff := &Effective{Deployment: d, Manifests: ms, PolicyFiles: files, Fingerprint: p.hash(), parts: p}
	set, err := policy.Load(policyTools(ms), files...)
	if err != nil {
		return eff, err
	}
	eff.Policy = set
	return eff, nil
}

// readPolicyFiles reads the default policy and a deployment's policy
// files, each named relative to the deployment's directory.
func readPolicyFiles(d *config.Config) ([]policy.File, error) {
	files := []policy.File{policy.DefaultFile()}
	var errs []error
	for _, p := range d.Policies {
		src, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read policy: %w", err))
			continue
		}
		files = append(files, policy.File{Name: rel(d.Dir, p), Src: src})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}

func policyTools(ms map[string]*capabilities.Manifest) policy.Tools {
	tools := policy.Tools{}
	for _, m := range ms {
		for _, t := range m.Tools {
			tools[t.Name] = t.Input
		}
	}
	return tools
}

// Fingerprint is the hash of everything in a deployment that decides what
// its runs may do: the configuration's settings (the working directory,
// the bus mode and its settings, the state directory, the subject prefix,
// where each secret comes from, how much of the audit log to keep), the
// bytes of every policy file (the default one included) with the name its
// rules are reported under, and for every worker the digest of its manifest and schema files, the bytes
// of its WASM module, its effective grants, its config block and its
// replicas. It is "sha256:" and 64 hex digits.
//
// Left out, as they decide nothing a run does: the name of the
// configuration file, comments and positions in it, the order of workers,
// the address of an external bus (sluice up --nats may replace it), and
// secret values (never hashed where a client can read the hash).
func Fingerprint(d *config.Config, ms map[string]*capabilities.Manifest, policies []policy.File) string {
	return fingerprintParts(d, ms, policies).hash()
}

func (p parts) hash() string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// parts is what Fingerprint hashes, as JSON (whose maps have sorted keys).
type parts struct {
	Dir   string  `json:"dir"`
	Bus   busPart `json:"bus"`
	State string  `json:"state"`
	// Deployment is the deployment's name, left out for the default
	// one (so that its fingerprint is what it was before deployments
	// had names).
	Deployment string                   `json:"deployment,omitempty"`
	Prefix     string                   `json:"subject_prefix"`
	Secrets    map[string]config.Secret `json:"secrets"`
	Policies   []filePart               `json:"policies"`
	Workers    []workerPart             `json:"workers"`
	Notify     []notifyPart             `json:"notify,omitempty"`
	Audit      *config.AuditRetention   `json:"audit,omitempty"`
}

// notifyPart is a notifier as it counts for the fingerprint: its kind and
// where it sends, never a secret's value.
type notifyPart struct {
	Kind, URL, URLSecret, TokenSecret, Room string
}

type busPart struct {
	Embedded      bool          `json:"embedded"`
	Replicas      int           `json:"replicas,omitempty"`
	AccountSeed   config.Secret `json:"account_seed"`
	Creds         config.Secret `json:"creds"`
	CredentialTTL time.Duration `json:"credential_ttl,omitempty"`
}

type filePart struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

type workerPart struct {
	Name     string              `json:"name"`
	Manifest string              `json:"manifest"`
	Digest   string              `json:"digest"`
	Module   string              `json:"module,omitempty"`
	Grants   capabilities.Grants `json:"grants"`
	Config   json.RawMessage     `json:"config"`
	Replicas int                 `json:"replicas"`
}

func fingerprintParts(d *config.Config, ms map[string]*capabilities.Manifest, policies []policy.File) parts {
	p := parts{Dir: d.Dir, State: d.State, Prefix: d.Prefix, Secrets: d.Secrets,
		Bus: busPart{Embedded: d.ExternalNATS == nil}}
	if d.Deployment != schemas.DefaultDeployment {
		p.Deployment = d.Deployment
	}
	for _, n := range d.Notify {
		p.Notify = append(p.Notify, notifyPart{Kind: n.Kind, URL: n.URL, URLSecret: n.URLSecret, TokenSecret: n.TokenSecret, Room: n.Room})
	}
	if d.Audit != (config.AuditRetention{}) {
		a := d.Audit
		p.Audit = &a
	}
	if x := d.ExternalNATS; x != nil {
		p.Bus.Replicas, p.Bus.AccountSeed, p.Bus.Creds, p.Bus.CredentialTTL = x.Replicas, x.AccountSeed, x.Creds, x.CredentialTTL
	}
	for _, f := range policies {
		sum := sha256.Sum256(f.Src)
		p.Policies = append(p.Policies, filePart{Name: f.Name, SHA256: hex.EncodeToString(sum[:])})
	}
	byRef := map[string]*capabilities.Manifest{}
	for _, m := range ms {
		byRef[m.File] = m
	}
	for _, w := range d.Workers {
		wp := workerPart{Manifest: w.Manifest, Config: canonicalJSON(w.Config), Replicas: w.Replicas}
		if m := byRef[w.Manifest]; m != nil {
			wp.Name, wp.Digest, wp.Grants, wp.Module = m.Worker, m.Digest, m.Grants, moduleDigest(m)
		}
		p.Workers = append(p.Workers, wp)
	}
	slices.SortFunc(p.Workers, func(a, b workerPart) int { return strings.Compare(a.Name+"\x00"+a.Manifest, b.Name+"\x00"+b.Manifest) })
	return p
}

// moduleDigest is the SHA-256 of a WASM worker's module; "" for a
// built-in worker.
func moduleDigest(m *capabilities.Manifest) string {
	path, ok := strings.CutPrefix(m.Run, "wasm:")
	if !ok {
		return ""
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(m.File), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonicalJSON re-encodes a JSON value with sorted keys and no spaces;
// numbers keep their digits.
func canonicalJSON(raw json.RawMessage) json.RawMessage {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || dec.Decode(&v) != nil {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}

// Restart lists what differs between two deployments that a running
// orchestrator cannot change in place, so that a reload to b needs a
// new sluice up: the workers (their set, manifests, grants, config
// blocks and replicas), the bus, the state directory, the deployment's
// name, the subject prefix, the working directory, the secrets and where traces go. Policy files are what a
// reload changes. Empty when only policy files differ.
func Restart(a, b *Effective) []string {
	out := settingsChanged(a, b)
	return append(out, workersChanged(a.parts.Workers, b.parts.Workers)...)
}

// settingsChanged lists the deployment-wide settings that differ between
// a and b: the working directory, the state directory, the deployment's
// name, the subject prefix, the bus, the secrets and telemetry.otlp_endpoint, in that order.
func settingsChanged(a, b *Effective) []string {
	pa, pb := a.parts, b.parts
	var out []string
	if pa.Dir != pb.Dir {
		out = append(out, fmt.Sprintf("the working directory (%s, was %s)", pb.Dir, pa.Dir))
	}
	if pa.State != pb.State {
		out = append(out, fmt.Sprintf("the state directory (%s, was %s)", pb.State, pa.State))
	}
	if pa.Deployment != pb.Deployment {
		out = append(out, fmt.Sprintf("deployment (%s, was %s)", orDefault(pb.Deployment), orDefault(pa.Deployment)))
	}
	if pa.Prefix != pb.Prefix {
		out = append(out, fmt.Sprintf("subject_prefix (%s, was %s)", pb.Prefix, pa.Prefix))
	}
	if busChanged(a, b) {
		out = append(out, "nats")
	}
	if !jsonEqual(pa.Secrets, pb.Secrets) {
		out = append(out, "secrets")
	}
	if !jsonEqual(pa.Notify, pb.Notify) {
		out = append(out, "notify")
	}
	if a.Deployment.OTLPEndpoint != b.Deployment.OTLPEndpoint {
		// The exporter is set up once, when the orchestrator starts.
		out = append(out, "telemetry.otlp_endpoint")
	}
	return out
}

// busChanged reports whether the bus of a and b differs: its mode and
// settings, the nats value of the configuration, or the address of the
// external server.
func busChanged(a, b *Effective) bool {
	if !jsonEqual(a.parts.Bus, b.parts.Bus) || a.Deployment.NATS != b.Deployment.NATS {
		return true
	}
	xa, xb := a.Deployment.ExternalNATS, b.Deployment.ExternalNATS
	return xa != nil && xb != nil && xa.URL != xb.URL
}

// workersChanged lists the workers added in b, those whose manifest,
// grants, config block or replicas differ (in b's order), then those
// removed.
func workersChanged(a, b []workerPart) []string {
	var out []string
	old := map[string]workerPart{}
	for _, w := range a {
		old[w.Name] = w
	}
	seen := map[string]bool{}
	for _, w := range b {
		seen[w.Name] = true
		o, ok := old[w.Name]
		if !ok {
			out = append(out, fmt.Sprintf("worker %s (added)", w.Name))
			continue
		}
		if what := workerChanged(o, w); len(what) > 0 {
			out = append(out, fmt.Sprintf("worker %s (%s)", w.Name, strings.Join(what, ", ")))
		}
	}
	for _, w := range a {
		if !seen[w.Name] {
			out = append(out, fmt.Sprintf("worker %s (removed)", w.Name))
		}
	}
	return out
}

// workerChanged lists what differs between two versions of one worker:
// manifest (its file, digest or WASM module), grants, config, replicas.
func workerChanged(o, w workerPart) []string {
	var what []string
	if o.Manifest != w.Manifest || o.Digest != w.Digest || o.Module != w.Module {
		what = append(what, "manifest")
	}
	if !jsonEqual(o.Grants, w.Grants) {
		what = append(what, "grants")
	}
	if string(o.Config) != string(w.Config) {
		what = append(what, "config")
	}
	if o.Replicas != w.Replicas {
		what = append(what, "replicas")
	}
	return what
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// orDefault is a deployment's name as parts keeps it ("" for the default
// one), spelled out.
func orDefault(name string) string {
	if name == "" {
		return schemas.DefaultDeployment
	}
	return name
}
