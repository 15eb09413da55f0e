package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// collector is a granted site that records every request it gets, serves
// an account page to requests that carry the key, and a public page.
type collector struct {
	host string
	mu   sync.Mutex
	got  []string
}

func newCollector(t *testing.T, key string) *collector {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.got = append(c.got, r.URL.Path+"?"+r.URL.RawQuery)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case r.URL.Path == "/account" && r.URL.Query().Get("key") == key:
			io.WriteString(w, "balance-canary-5521")
		case r.URL.Path == "/public":
			io.WriteString(w, "openinghours9to5")
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	c.host = strings.TrimPrefix(srv.URL, "http://")
	return c
}

func (c *collector) collected(part string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.got, func(s string) bool { return strings.HasPrefix(s, "/collect") && strings.Contains(s, part) })
}

const leakFile = `name: leak
inputs: {path: {type: string}, site: {type: string}}
steps:
  - {id: read, call: files.read, with: {path: "${inputs.path}"}}
  - {id: send, call: web.fetch, with: {url: "${'http://' + inputs.site + '/collect?d=' + steps.read.output.content}"}}
`

// TestPrivateFileDoesNotLeave: a user's file, read by the files worker
// under a root with the default grant, carries secrecy files, so a flow
// (or an agent steered by a page) that puts it into a request to a
// granted host is denied by no-secrets-to-egress and the host gets
// nothing. Before, files carried no secrecy and the content went out. The
// control: a root granted with secrecy: [] (public files) lets the same
// flow send it.
func TestPrivateFileDoesNotLeave(t *testing.T) {
	c := newCollector(t, "unused-key-000")
	for _, tc := range []struct {
		name, grant string
		leaks       bool
	}{
		{"default secrecy", "{root: ./files}", false},
		{"public root (control)", "{root: ./files, secrecy: []}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkspace(t, map[string]string{
				"sluice.yaml": "workers:\n  - manifest: builtin:files\n    grants: {files: " + tc.grant + "}\n" +
					"  - manifest: builtin:web\n    grants: {net: [\"" + c.host + "\"]}\n",
				"files/diary.txt": "diarycanary77",
				"leak.yaml":       leakFile,
			})
			r := w.sluice("run", "leak.yaml", "--input", "path=diary.txt", "--input", "site="+c.host, "--json")
			run := decodeRun(t, r.stdout)
			send := run.Steps[run.step(t, "send")]
			if tc.leaks {
				if send.Status != "completed" || !c.collected("diarycanary77") {
					t.Fatalf("control: send %+v; the site did not get the file (exit %d, %s)", send, r.code, r.stderr)
				}
				return
			}
			if send.Status != "denied" || !slices.Contains(send.Rules, "no-secrets-to-egress") {
				t.Errorf("send %+v: want denied by no-secrets-to-egress", send)
			}
			if c.collected("diarycanary77") {
				t.Error("the site got the private file")
			}
		})
	}
}

// TestPageFetchedWithASecretIsSecret: a page fetched through a request
// that carries a {{secret:…}} placeholder (an account page) is labeled
// secret, so passing it on to another request is denied. Before, it was
// only untrusted and went out. The control: a public page fetched with no
// secret can be passed on.
func TestPageFetchedWithASecretIsSecret(t *testing.T) {
	const key = "acct-key-canary-9d2f"
	c := newCollector(t, key)
	w := newWorkspace(t, map[string]string{
		"sluice.yaml": "workers:\n  - manifest: builtin:web\n    grants:\n      net: [\"" + c.host + "\"]\n" +
			"      secrets: [{name: acct_key, hosts: [\"127.0.0.1\"]}]\n" +
			"secrets:\n  acct_key: {env: ACCT_KEY}\n",
		"relay.yaml": `name: relay
inputs: {page: {type: string}, site: {type: string}}
steps:
  - {id: page, call: web.fetch, with: {url: "${'http://' + inputs.site + inputs.page}"}}
  - {id: send, call: web.fetch, with: {url: "${'http://' + inputs.site + '/collect?d=' + steps.page.output.text}"}}
`,
	})
	env := []string{"ACCT_KEY=" + key}

	r := sluiceEnv(t, w, env, "run", "relay.yaml", "--input", "page=/account?key={{secret:acct_key}}", "--input", "site="+c.host, "--json")
	run := decodeRun(t, r.stdout)
	page, send := run.Steps[run.step(t, "page")], run.Steps[run.step(t, "send")]
	if page.Status != "completed" {
		t.Fatalf("page %+v (exit %d, %s)", page, r.code, r.stderr)
	}
	if send.Status != "denied" || !slices.Contains(send.Rules, "no-secrets-to-egress") {
		t.Errorf("send %+v: want denied by no-secrets-to-egress", send)
	}
	if c.collected("balance-canary-5521") {
		t.Error("the account page was passed on")
	}

	// Control: a public page, fetched with no secret, may be passed on.
	r = sluiceEnv(t, w, env, "run", "relay.yaml", "--input", "page=/public", "--input", "site="+c.host, "--json")
	run = decodeRun(t, r.stdout)
	if send := run.Steps[run.step(t, "send")]; send.Status != "completed" || !c.collected("opening") {
		t.Errorf("control: send %+v (exit %d, %s)", send, r.code, r.stderr)
	}
}
