package orchestrator

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/config"
	"github.com/sluicehq/sluice/schemas"
)

func TestReadNATSSource(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "account.nk")
	open := filepath.Join(dir, "open.nk")
	os.WriteFile(good, []byte("SAFILE\n"), 0o600)
	os.WriteFile(open, []byte("SAFILE\n"), 0o640)
	getenv := func(k string) string { return map[string]string{"SEED": "SAENV"}[k] }
	pos := schemas.Pos{Line: 3, Col: 17}
	for _, tc := range []struct {
		name    string
		src     config.Secret
		want    string // the value read
		wantErr string // the diagnostic, positioned at pos
	}{
		{name: "env", src: config.Secret{Env: "SEED"}, want: "SAENV"},
		{name: "file", src: config.Secret{File: good}, want: "SAFILE\n"},
		{name: "unset env", src: config.Secret{Env: "NOPE"}, wantErr: "nats.account_seed: environment variable NOPE is not set"},
		{name: "group-readable file", src: config.Secret{File: open},
			wantErr: "nats.account_seed: " + open + " is readable by group or others (mode 0640); run chmod 600 " + open},
		{name: "missing file", src: config.Secret{File: filepath.Join(dir, "none")},
			wantErr: "nats.account_seed: stat " + filepath.Join(dir, "none") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readNATSSource(&config.Config{File: "sluice.yaml"}, tc.src, "nats.account_seed", pos, getenv)
			if tc.wantErr != "" {
				ds, ok := schemas.AsDiagnostics(err)
				if !ok || len(ds) != 1 {
					t.Fatalf("err = %v, want one diagnostic", err)
				}
				if d := ds[0]; d.Line != 3 || d.Col != 17 || d.Code != "config_nats_credentials" || d.Message != tc.wantErr {
					t.Fatalf("got %+v, want %q at 3:17", d, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}
