// Package natscreds reads the credential Sluice hands a process — a bare
// nkey seed (the embedded server) or a .creds file with a user JWT and its
// seed (an external server in operator mode) — into a NATS connect option.
// The credential stays in memory, so reconnects work after the file is
// removed.
package natscreds

import (
	"bytes"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Option turns the contents of a credential file into a connect option.
func Option(b []byte) (nats.Option, error) {
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		token, err := nkeys.ParseDecoratedJWT(b)
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedUserNKey(b)
		if err != nil {
			return nil, errors.New("a .creds file without a user seed")
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		return nats.UserJWTAndSeed(token, string(seed)), nil
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, errors.New("neither an nkey seed nor a .creds file")
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}
