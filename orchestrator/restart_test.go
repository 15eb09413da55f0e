package orchestrator

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/orchestrator/config"
)

// effective builds an Effective with the given deployment and parts, as
// LoadEffective would have read them.
func effective(d config.Config, p parts) *Effective {
	return &Effective{Deployment: &d, parts: p}
}

// TestRestartListsEveryChangeInOrder changes every setting and worker at
// once: Restart names each, settings first, then the workers of the new
// deployment in its order, then the removed ones.
func TestRestartListsEveryChangeInOrder(t *testing.T) {
	worker := func(name string) workerPart {
		return workerPart{Name: name, Manifest: "builtin:" + name, Digest: "d", Config: json.RawMessage(`{}`), Replicas: 1}
	}
	changed := worker("web")
	changed.Module, changed.Grants, changed.Config, changed.Replicas = "m", capabilities.Grants{Net: []string{"a.example:443"}}, json.RawMessage(`{"x":1}`), 2
	a := effective(config.Config{NATS: config.Embedded}, parts{Dir: "/a", State: "/a/state", Prefix: "sluice",
		Secrets: map[string]config.Secret{"A": {}}, Bus: busPart{Embedded: true},
		Workers: []workerPart{worker("web"), worker("files"), worker("email")}})
	b := effective(config.Config{NATS: "nats://127.0.0.1:4222", ExternalNATS: &config.ExternalNATS{URL: "nats://127.0.0.1:4222"},
		OTLPEndpoint: "http://127.0.0.1:4318"},
		parts{Dir: "/b", State: "/b/state", Prefix: "other", Secrets: map[string]config.Secret{"B": {}},
			Workers: []workerPart{worker("payment"), changed, worker("files")}})
	want := []string{
		"the working directory (/b, was /a)",
		"the state directory (/b/state, was /a/state)",
		"subject_prefix (other, was sluice)",
		"nats",
		"secrets",
		"telemetry.otlp_endpoint",
		"worker payment (added)",
		"worker web (manifest, grants, config, replicas)",
		"worker email (removed)",
	}
	if got := Restart(a, b); !slices.Equal(got, want) {
		t.Fatalf("Restart:\n got %q\nwant %q", got, want)
	}
	if got := Restart(a, a); got != nil {
		t.Fatalf("Restart of a deployment to itself: %q, want nothing", got)
	}
}

// TestRestartNamesTheBus checks each way two buses differ on its own,
// the address of an external server (which the fingerprint leaves out)
// included.
func TestRestartNamesTheBus(t *testing.T) {
	external := func(url string) *Effective {
		return effective(config.Config{NATS: "nats", ExternalNATS: &config.ExternalNATS{URL: url}}, parts{})
	}
	embedded := func(nats string) *Effective {
		return effective(config.Config{NATS: nats}, parts{Bus: busPart{Embedded: true}})
	}
	for _, tc := range []struct {
		name string
		a, b *Effective
		want []string
	}{
		{"the same external server", external("nats://127.0.0.1:4222"), external("nats://127.0.0.1:4222"), nil},
		{"another external server", external("nats://127.0.0.1:4222"), external("nats://127.0.0.1:4223"), []string{"nats"}},
		{"another nats value", embedded(config.Embedded), embedded("other"), []string{"nats"}},
		{"embedded, then external", embedded("nats"), external("nats://127.0.0.1:4222"), []string{"nats"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Restart(tc.a, tc.b); !slices.Equal(got, tc.want) {
				t.Fatalf("Restart: %q, want %q", got, tc.want)
			}
		})
	}
}
