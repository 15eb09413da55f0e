package egress

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

func request(t *testing.T, u string) []byte {
	t.Helper()
	b, _ := json.Marshal(schemas.EgressRequest{Method: "GET", URL: u})
	return b
}

func TestBroker(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("other")) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect-out":
			http.Redirect(w, r, other.URL+"/", http.StatusFound)
		case "/big":
			w.Write([]byte(strings.Repeat("x", 2048)))
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("hello"))
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	port := host[strings.LastIndexByte(host, ':')+1:]
	var tracked []string
	b := New(Config{
		Grants:  map[string][]string{"web": {host, "localhost:" + port}},
		MaxBody: 1024,
		Track: func(worker, msg, hp string) bool {
			tracked = append(tracked, worker+" "+msg+" "+hp)
			return msg == "m1"
		},
	})
	ctx := context.Background()
	tests := []struct {
		name, worker, msg, url string
		wantStatus             int
		wantCode, wantErr      string
	}{
		{name: "granted", worker: "web", msg: "m1", url: srv.URL + "/", wantStatus: 200},
		{name: "granted by name localhost", worker: "web", msg: "m1", url: "http://localhost:" + port + "/", wantStatus: 200},
		{name: "other worker has no grant", worker: "payment", msg: "m1", url: srv.URL + "/", wantCode: schemas.CodeEgress, wantErr: "not granted"},
		{name: "ungranted host", worker: "web", msg: "m1", url: other.URL + "/", wantCode: schemas.CodeEgress,
			wantErr: "is not granted to worker web; to allow it, add grants: {net: [\"" + strings.TrimPrefix(other.URL, "http://") + "\"]} to the web worker in sluice.yaml"},
		{name: "redirect to ungranted host", worker: "web", msg: "m1", url: srv.URL + "/redirect-out", wantCode: schemas.CodeEgress, wantErr: "redirect refused"},
		{name: "scheme", worker: "web", msg: "m1", url: "file:///etc/passwd", wantCode: schemas.CodeEgress, wantErr: "scheme"},
		{name: "user info", worker: "web", msg: "m1", url: "http://a:b@" + host + "/", wantCode: schemas.CodeEgress, wantErr: "user info"},
		{name: "no call in flight", worker: "web", msg: "forged", url: srv.URL + "/", wantCode: schemas.CodeEgress, wantErr: "in flight"},
		{name: "body too large", worker: "web", msg: "m1", url: srv.URL + "/big", wantCode: schemas.CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.Do(ctx, tc.worker, tc.msg, request(t, tc.url))
			if tc.wantCode != "" {
				if resp.Error == nil || resp.Error.Code != tc.wantCode || !strings.Contains(resp.Error.Message, tc.wantErr) {
					t.Fatalf("got %+v, want error %s containing %q", resp.Error, tc.wantCode, tc.wantErr)
				}
				if strings.HasPrefix(tc.name, "redirect") && strings.Contains(resp.Error.Message, "add grants") {
					t.Fatalf("a redirect's target is suggested as a grant: %s", resp.Error.Message)
				}
				return
			}
			if resp.Error != nil || resp.Status != tc.wantStatus || string(resp.Body) != "hello" {
				t.Fatalf("got %+v %q", resp.Error, resp.Body)
			}
		})
	}
	u, _ := url.Parse(srv.URL)
	if tracked[0] != "web m1 "+u.Host {
		t.Errorf("first tracked %q", tracked[0])
	}
}

// The predicate the dial applies to every resolved address (unmapped):
// the special-purpose registries, with the exceptions a grant names.
func TestAddressAllowed(t *testing.T) {
	b := New(Config{})
	type tc struct {
		host, ip string
		want     bool
	}
	cases := []tc{
		{"127.0.0.1", "127.0.0.1", true},
		{"localhost", "127.0.0.1", true},
		{"localhost", "::1", true},
		{"localhost", "10.0.0.1", false},
		{"10.1.2.3", "10.1.2.3", true},
		{"100.100.100.200", "100.100.100.200", true},
		{"10.1.2.3", "10.1.2.4", false},
		{"api.example", "93.184.216.34", true},
		{"api.example", "8.8.8.8", true},
		{"api.example", "2606:4700:4700::1111", true},
		{"api.example", "2001:4860:4860::8888", true},
		{"api.example", "100.63.255.255", true},
		{"api.example", "100.128.0.0", true},
		{"api.example", "198.17.255.255", true},
		{"api.example", "198.20.0.0", true},
		{"api.example", "1.0.0.0", true},
		{"api.example", "223.255.255.255", true},
	}
	for _, sa := range specialAddresses {
		cases = append(cases, tc{"api.example", sa.ip, false})
	}
	for _, c := range cases {
		err := b.addressAllowed(c.host, mustAddr(c.ip).Unmap())
		if (err == nil) != c.want {
			t.Errorf("addressAllowed(%s, %s) = %v, want allowed %v", c.host, c.ip, err, c.want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Secrets are filled in only for their hosts, never reach the worker, and
// any echo of them in the response is removed, in every encoding.
func TestSecrets(t *testing.T) {
	const key = "sk-canary-7f3a9c2e1d"
	var seenAuth []string
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, "other:"+r.Header.Get("Authorization")+r.Header.Get("X-Custom-Auth"))
		mu.Unlock()
		w.Write([]byte("other"))
	}))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, "api:"+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path == "/away" {
			// Another host name: the secret is granted for 127.0.0.1 only.
			port := other.URL[strings.LastIndexByte(other.URL, ':')+1:]
			w.Header().Set("X-Custom-Auth", r.Header.Get("X-Custom-Auth"))
			http.Redirect(w, r, "http://localhost:"+port+"/", http.StatusFound)
			return
		}
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("X-Echo", got)
		fmt.Fprintf(w, "plain=%s b64=%s b64url=%s hex=%s HEX=%s q=%s",
			got, base64.StdEncoding.EncodeToString([]byte(got)), base64.RawURLEncoding.EncodeToString([]byte(got)),
			hex.EncodeToString([]byte(got)), strings.ToUpper(hex.EncodeToString([]byte(got))), url.QueryEscape(got+"&"))
	}))
	defer api.Close()
	apiHost := strings.TrimPrefix(api.URL, "http://")
	otherHost := strings.TrimPrefix(other.URL, "http://")
	b := New(Config{
		Grants:       map[string][]string{"llm": {apiHost, otherHost}, "web": {apiHost}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]Secret{"api_key": NewSecret("api_key", []byte(key))},
		SecretGrants: map[string][]SecretGrant{"llm": {{Name: "api_key", Hosts: []string{"127.0.0.1"}}}},
	})
	do := func(worker, u string, headers map[string]string) *schemas.EgressResponse {
		body, _ := json.Marshal(schemas.EgressRequest{Method: "GET", URL: u, Headers: headers})
		return b.Do(context.Background(), worker, "m", body)
	}
	auth := map[string]string{"Authorization": "Bearer {{secret:api_key}}"}

	resp := do("llm", api.URL+"/", auth)
	if resp.Error != nil || resp.Status != 200 {
		t.Fatalf("granted request: %+v", resp.Error)
	}
	if !slices.Contains(seenAuth, "api:Bearer "+key) {
		t.Fatalf("the API did not receive the key: %v", seenAuth)
	}
	all := string(resp.Body) + fmt.Sprint(resp.Headers)
	for _, leak := range []string{key, base64.StdEncoding.EncodeToString([]byte(key)), hex.EncodeToString([]byte(key))} {
		if strings.Contains(all, leak) {
			t.Fatalf("response leaks %q: %s", leak, all)
		}
	}
	if strings.Count(string(resp.Body), Redacted) != 6 || resp.Headers["X-Echo"] != Redacted {
		t.Errorf("echoes not all redacted: %s %v", resp.Body, resp.Headers)
	}

	for _, tc := range []struct {
		name, worker, url string
		headers           map[string]string
		want              string
	}{
		{"worker without the grant", "web", api.URL + "/", auth, "not granted to worker web"},
		{"unknown secret", "llm", api.URL + "/", map[string]string{"X": "{{secret:nope}}"}, "not granted"},
		{"secret in the host", "llm", "http://{{secret:api_key}}.example/", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(tc.worker, tc.url, tc.headers)
			if r.Error == nil || !strings.Contains(r.Error.Message, tc.want) || strings.Contains(r.Error.Message, key) {
				t.Fatalf("got %+v", r.Error)
			}
		})
	}

	// A redirect to a host the secret is not for does not carry it.
	mu.Lock()
	seenAuth = nil
	mu.Unlock()
	b.cfg.SecretGrants["llm"][0].Hosts = []string{"127.0.0.1"}
	otherPort := otherHost[strings.LastIndexByte(otherHost, ':')+1:]
	b.cfg.Grants["llm"] = append(b.cfg.Grants["llm"], "localhost:"+otherPort)
	r := do("llm", api.URL+"/away", map[string]string{"Authorization": "Bearer {{secret:api_key}}", "X-Custom-Auth": "{{secret:api_key}}"})
	if r.Error != nil {
		t.Fatalf("redirect: %+v", r.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(seenAuth, "other:") {
		t.Fatalf("the redirect was not followed, or carried a header: %v", seenAuth)
	}
}

// Every request is reported, performed or refused, with its destination
// host and without its path or query.
func TestReport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var events []Event
	b := New(Config{Grants: map[string][]string{"web": {host}}, Track: func(string, string, string) bool { return true },
		Report: func(e Event) { events = append(events, e) }})
	b.Do(context.Background(), "web", "m1", request(t, srv.URL+"/private?token=abc"))
	b.Do(context.Background(), "web", "m2", request(t, "http://169.254.169.254/latest/meta-data"))
	if len(events) != 2 {
		t.Fatalf("events %+v", events)
	}
	if e := events[0]; e.Worker != "web" || e.MsgID != "m1" || e.Host != host || e.Status != 200 || e.Refused != "" {
		t.Errorf("performed: %+v", e)
	}
	if e := events[1]; e.Host != "169.254.169.254:80" || !strings.Contains(e.Refused, "not granted") {
		t.Errorf("refused: %+v", e)
	}
	for _, e := range events {
		if strings.Contains(fmt.Sprint(e), "token=abc") || strings.Contains(fmt.Sprint(e), "meta-data") {
			t.Errorf("event carries the URL's path or query: %+v", e)
		}
	}
}

// TestSecretEchoesInOtherForms: an API that echoes its key gzip-compressed
// to a worker that asked for gzip, inside the base64 of a longer string
// (user:key) at each alignment, in JSON \u escapes, in lower-case %xx, in
// HTML entities or in UTF-16, hands the worker nothing of it. Before, each
// of these reached the worker. The control: an answer without the key
// passes untouched, compressed or not.
func TestSecretEchoesInOtherForms(t *testing.T) {
	const key = "sk-canary-7f3a9c2e1d"
	u16 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	var ju, ent, pct strings.Builder
	for i, r := range key {
		fmt.Fprintf(&ju, `\u%04x`, r)
		fmt.Fprintf(&pct, "%%%02x", r)
		if i%2 == 0 {
			fmt.Fprintf(&ent, "&#%d;", r)
		} else {
			ent.WriteRune(r)
		}
	}
	echoes := map[string]string{
		"/b64-0":   base64.StdEncoding.EncodeToString([]byte(key)),
		"/b64-1":   base64.StdEncoding.EncodeToString([]byte("u:" + key)),
		"/b64-2":   base64.StdEncoding.EncodeToString([]byte("user:" + key)),
		"/json":    `{"k":"` + ju.String() + `"}`,
		"/pct":     pct.String(),
		"/entity":  ent.String(),
		"/utf16":   u16(key),
		"/gzip":    key,
		"/control": "no key here",
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		text := echoes[r.URL.Path]
		if !strings.Contains(r.Header.Get("Authorization"), key) {
			text = "unauthorized"
		}
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write([]byte(text))
			zw.Close()
			return
		}
		w.Write([]byte(text))
	}))
	defer api.Close()
	apiHost := strings.TrimPrefix(api.URL, "http://")
	b := New(Config{
		Grants:       map[string][]string{"llm": {apiHost}},
		Track:        func(string, string, string) bool { return true },
		Secrets:      map[string]Secret{"api_key": NewSecret("api_key", []byte(key))},
		SecretGrants: map[string][]SecretGrant{"llm": {{Name: "api_key", Hosts: []string{"127.0.0.1"}}}},
	})
	headers := map[string]string{"Authorization": "Bearer {{secret:api_key}}", "Accept-Encoding": "gzip"}
	holdsKey := func(body []byte) bool {
		s := string(body)
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				s = string(plain)
			}
		}
		s = html.UnescapeString(strings.ReplaceAll(s, "\x00", ""))
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
		var js map[string]string
		if json.Unmarshal([]byte(s), &js) == nil {
			s = js["k"]
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding} {
			if d, err := enc.DecodeString(s); err == nil {
				s = string(d)
			}
		}
		return strings.Contains(s, key)
	}
	for path := range echoes {
		body, _ := json.Marshal(schemas.EgressRequest{Method: "GET", URL: api.URL + path, Headers: headers})
		resp := b.Do(context.Background(), "llm", "m", body)
		if path == "/control" {
			if resp.Error != nil || string(resp.Body) != "no key here" {
				t.Errorf("control: %+v %q", resp.Error, resp.Body)
			}
			continue
		}
		if resp.Error == nil && holdsKey(resp.Body) {
			t.Errorf("%s: the worker got the key back: %q", path, resp.Body)
		}
		if resp.Error == nil && resp.Status != 200 {
			t.Errorf("%s: status %d", path, resp.Status)
		}
	}
}
