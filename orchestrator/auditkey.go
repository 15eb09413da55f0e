package orchestrator

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/orchestrator/config"
)

// AuditKeySecret is the name, under secrets: in sluice.yaml, of the key
// that signs the checkpoints of the audit log: the Ed25519 seed (32 bytes)
// in standard base64. No worker may be granted it, and the egress broker
// never holds it.
const AuditKeySecret = "audit_signing_key"

// AuditKeyFile is where, in the state directory, the signing key is kept
// when sluice.yaml names none: sluice up creates it, mode 0600, the first
// time it starts.
const AuditKeyFile = "audit-signing.key"

// AuditKey returns the key that signs the deployment's audit checkpoints,
// and says where it comes from: the secret AuditKeySecret when sluice.yaml
// configures it, else the state directory's AuditKeyFile. With create, a
// missing file is generated; without, no key is (nil, where, nil).
func AuditKey(d *config.Config, getenv func(string) string, create bool) (ed25519.PrivateKey, string, error) {
	if s, ok := d.Secrets[AuditKeySecret]; ok {
		v, err := readSecret(AuditKeySecret, s, getenv)
		if err != nil {
			return nil, "", err
		}
		k, err := parseSeed(v)
		if err != nil {
			return nil, "", fmt.Errorf("secret %s: %w", AuditKeySecret, err)
		}
		return k, "secret " + AuditKeySecret, nil
	}
	path := filepath.Join(d.State, AuditKeyFile)
	v, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createAuditKey(path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	k, err := parseSeed(bytes.TrimRight(v, "\r\n"))
	if err != nil {
		return nil, "", fmt.Errorf("audit signing key %s: %w", path, err)
	}
	return k, path, nil
}

func parseSeed(v []byte) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(string(v))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("not an Ed25519 seed: want %d random bytes in standard base64 (head -c %d /dev/urandom | base64)", ed25519.SeedSize, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// createAuditKey generates a signing key into path, readable by its owner
// only. A file that appeared meanwhile is read instead.
func createAuditKey(path string) (ed25519.PrivateKey, string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return AuditKey(&config.Config{State: filepath.Dir(path)}, nil, false)
	}
	if err != nil {
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(seed) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, "", fmt.Errorf("audit signing key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), path, nil
}
