package egress

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// specialAddresses are addresses in the IANA special-purpose registries
// that a granted name might resolve to: each must be refused by the dial.
var specialAddresses = []struct{ name, ip string }{
	{"shared (CGNAT, Tailscale)", "100.64.0.1"},
	{"metadata service in shared space", "100.100.100.200"},
	{"shared, top", "100.127.255.254"},
	{"NAT64 of a private address", "64:ff9b::a00:1"},
	{"NAT64 of loopback", "64:ff9b::7f00:1"},
	{"NAT64 of link-local metadata", "64:ff9b::a9fe:a9fe"},
	{"NAT64 of the shared metadata address", "64:ff9b::6464:64c8"},
	{"6to4 of a private address", "2002:a00:1::1"},
	{"6to4 of 192.168.1.1", "2002:c0a8:101::1"},
	{"6to4 of loopback", "2002:7f00:1::1"},
	{"benchmarking", "198.18.0.1"},
	{"benchmarking, top", "198.19.255.254"},
	{"IETF protocol assignments", "192.0.0.1"},
	{"IETF protocol assignments (NAT64 discovery)", "192.0.0.170"},
	{"reserved", "240.0.0.1"},
	{"reserved, top", "255.255.255.254"},
	{"this network", "0.0.0.1"},
	{"this network, top", "0.255.255.255"},
	{"loopback", "127.0.0.1"},
	{"private", "10.1.2.3"},
	{"private 172.16", "172.16.0.1"},
	{"private 192.168", "192.168.1.1"},
	{"link-local metadata", "169.254.169.254"},
	{"IPv6 loopback", "::1"},
	{"IPv6 unique local", "fd00::1"},
	{"IPv6 link-local", "fe80::1"},
	{"mapped shared", "::ffff:100.100.100.200"},
	{"mapped benchmarking", "::ffff:198.18.0.1"},
	{"mapped IETF", "::ffff:192.0.0.1"},
	{"mapped reserved", "::ffff:240.0.0.1"},
	{"mapped this network", "::ffff:0.0.0.1"},
	{"mapped loopback", "::ffff:127.0.0.1"},
	{"mapped private", "::ffff:10.1.2.3"},
	{"mapped link-local", "::ffff:169.254.169.254"},
}

// A granted name that resolves to a special-purpose address is refused by
// the broker's dial, after a real DNS lookup (a DNS server on loopback
// whose answers the test chooses), before any connection is made.
func TestGrantedNameResolvingToSpecialAddressIsRefused(t *testing.T) {
	names := map[string][]netip.Addr{}
	grants := []string{}
	for i, sa := range specialAddresses {
		name := "h" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + ".attacker.test"
		names[name] = []netip.Addr{netip.MustParseAddr(sa.ip)}
		grants = append(grants, name+":80")
	}
	dns := startDNS(t, names)
	var refused []Event
	reported := make(chan Event, len(specialAddresses))
	b := New(Config{
		Grants:   map[string][]string{"web": grants},
		Track:    func(string, string, string) bool { return true },
		Resolver: dns.resolver(),
		// Without the refusal, the broker would try to connect; the
		// timeout only keeps such a failing run short.
		Timeout: 3 * time.Second,
		Report:  func(e Event) { reported <- e },
	})
	t.Run("refused", func(t *testing.T) {
		for i, sa := range specialAddresses {
			name := grants[i][:len(grants[i])-len(":80")]
			t.Run(sa.name, func(t *testing.T) {
				t.Parallel()
				resp := b.Do(context.Background(), "web", "m", request(t, "http://"+name+"/latest/meta-data"))
				want := netip.MustParseAddr(sa.ip).Unmap().String()
				if resp.Error == nil || !strings.Contains(resp.Error.Message, name+" resolves to "+want+", which the grant does not name") {
					t.Fatalf("%s resolving to %s: got status %d, error %+v; want a refusal naming the address", name, sa.ip, resp.Status, resp.Error)
				}
				if !dns.wasAsked(name) {
					t.Fatalf("%s was not looked up through the test's DNS server", name)
				}
			})
		}
	})
	close(reported)
	for e := range reported {
		refused = append(refused, e)
		if e.Refused == "" {
			t.Errorf("reported as performed: %+v", e)
		}
	}
	if len(refused) != len(specialAddresses) {
		t.Errorf("%d requests reported, want %d", len(refused), len(specialAddresses))
	}
}

// The control: the same DNS path lets through what is neither special nor
// ungranted. A name resolving to public addresses yields them (a special
// address beside them is dropped), and a grant that names a loopback
// address, literally or as localhost, still reaches the server there.
func TestGrantedAddressesAreReached(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer srv.Close()
	hostport := strings.TrimPrefix(srv.URL, "http://")
	port := hostport[strings.LastIndexByte(hostport, ':')+1:]
	dns := startDNS(t, map[string][]netip.Addr{
		"api.example.test":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946")},
		"mixed.example.test":  {netip.MustParseAddr("100.100.100.200"), netip.MustParseAddr("93.184.216.34")},
		"mapped.example.test": {netip.MustParseAddr("::ffff:93.184.216.34")},
	})
	b := New(Config{
		Grants: map[string][]string{"web": {"api.example.test:443", "mixed.example.test:443", "mapped.example.test:443",
			hostport, "localhost:" + port}},
		Track:    func(string, string, string) bool { return true },
		Resolver: dns.resolver(),
	})
	for _, tc := range []struct{ name, want string }{
		{"api.example.test", "[93.184.216.34 2606:2800:220:1:248:1893:25c8:1946]"},
		{"mixed.example.test", "[93.184.216.34]"},
		{"mapped.example.test", "[93.184.216.34]"},
	} {
		ips, err := b.resolve(context.Background(), "web", tc.name, "443")
		if got := fmt.Sprint(ips); err != nil || got != tc.want {
			t.Errorf("resolve %s: %v %v, want %s", tc.name, ips, err, tc.want)
		}
	}
	for _, u := range []string{srv.URL + "/", "http://localhost:" + port + "/"} {
		resp := b.Do(context.Background(), "web", "m", request(t, u))
		if resp.Error != nil || resp.Status != 200 || string(resp.Body) != "hello" {
			t.Errorf("%s: %+v %q", u, resp.Error, resp.Body)
		}
	}
	// The grant is by host:port.
	if _, err := b.resolve(context.Background(), "web", "api.example.test", "80"); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Errorf("ungranted port: %v", err)
	}
}
