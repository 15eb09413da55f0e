package worker

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// renewAt says when a worker whose user JWT expires should stop taking
// calls: early enough that a call taken just before still has time to be
// answered (timeout plus a margin), and never later than half the JWT's
// life. ok is false for a credential that does not expire.
func renewAt(nc *nats.Conn, timeout time.Duration) (at time.Time, ok bool) {
	if nc.Opts.UserJWT == nil {
		return time.Time{}, false
	}
	token, err := nc.Opts.UserJWT()
	if err != nil {
		return time.Time{}, false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		IssuedAt int64 `json:"iat"`
		Expires  int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Expires == 0 {
		return time.Time{}, false
	}
	exp := time.Unix(claims.Expires, 0)
	margin := min(timeout+5*time.Second, exp.Sub(time.Unix(claims.IssuedAt, 0))/2)
	return exp.Add(-margin), true
}
