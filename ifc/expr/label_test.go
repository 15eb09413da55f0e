package expr

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// TestLabelTrustedAndUntrustedFieldIsUntrusted: a value built from a
// trusted and an untrusted field is untrusted, with both sources, however
// it is built; built from the trusted field alone it stays trusted.
func TestLabelTrustedAndUntrustedFieldIsUntrusted(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	lookup := func(p Path) ifc.Label {
		switch p.String() {
		case "steps.a.output.x":
			return ifc.UntrustedFrom("web:evil.example")
		case "steps.a.output.y":
			return ifc.TrustedFrom("user")
		}
		return ifc.TrustedFrom()
	}
	for _, src := range []string{
		"${steps.a.output.y + steps.a.output.x}",
		"${steps.a.output.y}${steps.a.output.x}",
		"${[steps.a.output.y, steps.a.output.x][0]}",
		"${{'k': steps.a.output.y, 'j': steps.a.output.x}.k}",
		"${steps.a.output.y.replace(steps.a.output.x, '')}",
		"${steps.a.output.x != '' ? steps.a.output.y : steps.a.output.y}",
		"${[steps.a.output.x].exists(v, v == 'go') || steps.a.output.y == 'ok'}",
		"${size(steps.a.output.x) + size(steps.a.output.y) > 3}",
	} {
		l := compile(t, env, src).Label(lookup)
		if l.Integrity() != ifc.Untrusted || !slices.Equal(l.Sources(), []string{"user", "web:evil.example"}) {
			t.Errorf("%s: %v, want untrusted from both", src, l)
		}
	}
	if l := compile(t, env, "${steps.a.output.y.upperAscii() + '!'}").Label(lookup); l.Integrity() != ifc.Trusted {
		t.Errorf("trusted field alone: %v", l)
	}
}
