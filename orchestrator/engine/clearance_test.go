package engine

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/policy"
)

// The clearance check alone stops an untrusted value from reaching every
// privileged built-in tool, and a secret from reaching every egress one:
// under a policy whose only rule allows everything, an untrusted call of
// each privileged tool is held (or denied) by the rule "clearance", and a
// call of each egress tool that carries pii or payment is never allowed.
// The tools are the built-in manifests as shipped, each given to the gate
// the way the engine gives it (policy.Tool from the step's tool), so a
// tool whose clearance was widened, or for which the check is skipped,
// fails here by name.
func TestClearanceStopsUntrustedCallsOfEveryPrivilegedTool(t *testing.T) {
	const allowAll = `rules:
  - {name: allow-everything, when: "true", action: allow, reason: the clearance check alone}
`
	var tools []*capabilities.Tool
	inputs := policy.Tools{}
	workers := map[string]string{}
	for _, name := range capabilities.Builtins() {
		m, err := capabilities.Load(capabilities.BuiltinPrefix + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range m.ToolNames() {
			tool := m.Tools[tn]
			tools = append(tools, tool)
			inputs[tool.Name] = tool.Input
			workers[tool.Name] = m.Worker
		}
	}
	set, err := policy.Load(inputs, policy.File{Name: "allow.yaml", Src: []byte(allowAll)})
	if err != nil {
		t.Fatal(err)
	}
	decide := func(tool *capabilities.Tool, l ifc.Label) policy.Decision {
		return set.Decide(policy.Input{
			Tool: policy.Tool{Name: tool.Name, Worker: workers[tool.Name], Privileged: tool.Privileged,
				Approvable: tool.Approvable, Egress: tool.Egress, Clearance: tool.Clearance},
			Label: l, ArgLabels: map[string]ifc.Label{"x": l}, Args: map[string]any{"x": "v"},
			Run: policy.Run{ID: "r", Flow: "f", Step: "s"},
		})
	}
	byClearance := func(d policy.Decision) bool {
		return slices.ContainsFunc(d.Rules, func(r policy.RuleRef) bool { return r.Name == policy.ClearanceRule })
	}
	privileged, egress := 0, 0
	for _, tool := range tools {
		// The control: a trusted call with no secrecy goes ahead.
		if d := decide(tool, ifc.TrustedFrom(ifc.SourceUser)); d.Action != policy.Allow {
			t.Errorf("%s, trusted: %s %v, want allow (the control)", tool.Name, d.Action, d.Rules)
		}
		if tool.Privileged {
			privileged++
			d := decide(tool, ifc.UntrustedFrom("web:evil.example"))
			if d.Action == policy.Allow || !byClearance(d) {
				t.Errorf("privileged %s, untrusted: %s %v, want held or denied by the clearance check", tool.Name, d.Action, d.Rules)
			}
		}
		if tool.Egress {
			egress++
			for _, tag := range []string{"pii", "payment"} {
				d := decide(tool, ifc.TrustedFrom(ifc.SourceUser).WithSecrecy(tag))
				if d.Action == policy.Allow || !byClearance(d) {
					t.Errorf("egress %s, carrying %s: %s %v, want held or denied by the clearance check", tool.Name, tag, d.Action, d.Rules)
				}
			}
		}
	}
	if privileged < 4 || egress < 2 {
		t.Errorf("%d privileged and %d egress tools among the built-ins, want payment.charge, email.send, files.write, calendar.create_event and web.fetch", privileged, egress)
	}
}
