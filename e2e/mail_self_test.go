package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/smtptest"
)

const myAgenda = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\n" +
	"BEGIN:VEVENT\r\nUID:mine-1\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250408T100000Z\r\n" +
	"DTEND:20250408T110000Z\r\nSUMMARY:Dentist agenda-canary-41\r\n" +
	"ORGANIZER:mailto:me@home.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestMailMyAgendaToMyself: "mail me my agenda" goes out through the
// declassify rule on registry.self that DESIGN §8 prescribes, though the
// default no-secrets-to-egress is always loaded; the same flow to anyone
// else is denied, and nothing reaches the server. Before, the default
// deny saw the labels as they came and denied both.
func TestMailMyAgendaToMyself(t *testing.T) {
	srv := smtptest.Start(t, "mail-pw-canary-77aa")
	host := srv.Addr
	w := newWorkspace(t, map[string]string{
		"ca.pem":       string(srv.CertPEM),
		"calendar.ics": myAgenda,
		"sluice.yaml": `workers:
  - manifest: builtin:email
    config:
      address: me@home.example
      smtp: {url: "smtp://` + host + `", username: me, password: "{{secret:mail_pw}}"}
    grants:
      net: ["` + host + `"]
      secrets: [{name: mail_pw, hosts: ["127.0.0.1"]}]
  - manifest: builtin:calendar
    config: {file: calendar.ics, owner: me@home.example, timezone: UTC}
secrets:
  mail_pw: {env: MAIL_PW}
policies: [mine.yaml]
`,
		"mine.yaml": `rules:
  - name: agenda-to-self
    when: tool.name == "email.send" && args.to in registry.self
    action: declassify
    tags: [pii]
registries:
  self: [me@home.example]
`,
		"agenda.yaml": `name: agenda
inputs:
  to: {type: string}
steps:
  - {id: cal, call: calendar.list_events, with: {from: "2025-04-08", to: "2025-04-09"}}
  - id: send
    call: email.send
    with: {to: "${inputs.to}", subject: Agenda, body: "${steps.cal.output.events[0].title}"}
`,
	})
	env := []string{"MAIL_PW=mail-pw-canary-77aa", "SSL_CERT_FILE=" + w.path("ca.pem")}

	r := sluiceEnv(t, w, env, "run", "agenda.yaml", "--input", "to=me@home.example", "--json")
	run := decodeRun(t, r.stdout)
	send := run.Steps[run.step(t, "send")]
	if r.code != 0 || send.Status != "completed" || send.Decision != "allow" || !slices.Contains(send.Rules, "agenda-to-self") {
		t.Fatalf("to self: exit %d, send %+v\nstderr %s", r.code, send, r.stderr)
	}
	got := srv.Received()
	if !slices.Equal(got.To, []string{"me@home.example"}) || len(got.Data) != 1 || !strings.Contains(got.Data[0], "agenda-canary-41") {
		t.Fatalf("server got to %v data %q", got.To, got.Data)
	}

	r = sluiceEnv(t, w, env, "run", "agenda.yaml", "--input", "to=eve@evil.example", "--json")
	run = decodeRun(t, r.stdout)
	send = run.Steps[run.step(t, "send")]
	if send.Status != "denied" || !slices.Contains(send.Rules, "no-secrets-to-egress") {
		t.Errorf("to another: send %+v", send)
	}
	if got := srv.Received(); len(got.Data) != 1 {
		t.Errorf("the server received %d messages, want the one to self", len(got.Data))
	}
}
