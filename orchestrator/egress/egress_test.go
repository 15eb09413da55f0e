package egress

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
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
		{name: "ungranted host", worker: "web", msg: "m1", url: other.URL + "/", wantCode: schemas.CodeEgress, wantErr: "not granted"},
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

func TestAddressAllowed(t *testing.T) {
	for _, tc := range []struct {
		host, ip string
		want     bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"localhost", "127.0.0.1", true},
		{"localhost", "10.0.0.1", false},
		{"api.example", "127.0.0.1", false},
		{"api.example", "10.1.2.3", false},
		{"api.example", "192.168.1.1", false},
		{"api.example", "169.254.169.254", false},
		{"api.example", "::1", false},
		{"api.example", "93.184.216.34", true},
		{"10.1.2.3", "10.1.2.3", true},
	} {
		if got := addressAllowed(tc.host, mustAddr(tc.ip)); got != tc.want {
			t.Errorf("addressAllowed(%s, %s) = %v", tc.host, tc.ip, got)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
