package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

// A worker with no net grant refuses every request, naming the grant that
// would allow the host it was asked for.
func TestHTTPWithoutGrantNamesTheGrant(t *testing.T) {
	for _, tc := range []struct {
		worker, url, want string
	}{
		{"web", "http://Example.test/x", `worker has no network grant; to reach example.test:80, add grants: {net: ["example.test:80"]} to the web worker in sluice.yaml`},
		{"web", "https://127.0.0.1:8443/", `worker has no network grant; to reach 127.0.0.1:8443, add grants: {net: ["127.0.0.1:8443"]} to the web worker in sluice.yaml`},
		{"email", "smtp://mail.test", `worker has no network grant; to reach mail.test:25, add grants: {net: ["mail.test:25"]} to the email worker in sluice.yaml`},
		{"web", "ftp://x.test/", "worker has no network grant"},
		{"web", "not a url", "worker has no network grant"},
		{"", "http://x.test/", "worker has no network grant"},
	} {
		c := NewCall("fetch", nil, nil)
		c.worker = tc.worker
		_, err := c.HTTP(context.Background(), schemas.EgressRequest{URL: tc.url})
		if !errors.Is(err, ErrNoEgress) || err.Error() != tc.want {
			t.Errorf("%s %s: %v, want %q", tc.worker, tc.url, err, tc.want)
		}
	}
}
