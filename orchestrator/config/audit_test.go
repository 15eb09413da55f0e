package config

import (
	"strings"
	"testing"
	"time"
)

// audit.max_age and audit.max_size are read with their units; a value
// that is not one, or is too small, is reported at its file:line:col, all
// at once.
func TestAuditRetention(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte("audit:\n  max_age: 90d\n  max_size: 1GiB\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.MaxAge != 90*24*time.Hour || c.Audit.MaxSize != 1<<30 {
		t.Fatalf("audit %+v", c.Audit)
	}
	for src, want := range map[string]AuditRetention{
		"audit: {max_age: 36h, max_size: 500MB}": {MaxAge: 36 * time.Hour, MaxSize: 500e6},
		"audit: {max_size: \"4096\"}":            {MaxSize: 4096},
		"audit: {}":                              {},
		"state: s":                               {},
	} {
		c, err := Parse("sluice.yaml", []byte(src+"\n"), t.TempDir())
		if err != nil || c.Audit != want {
			t.Errorf("%s: %+v %v, want %+v", src, c.Audit, err, want)
		}
	}
	_, err = Parse("sluice.yaml", []byte("state: s\naudit:\n  max_age: 3 months\n  max_size: 10\n"), t.TempDir())
	for _, want := range []string{
		`sluice.yaml:3:12: audit.max_age "3 months": not a duration`,
		`sluice.yaml:4:13: audit.max_size "10": at least 1KiB`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	_, err = Parse("sluice.yaml", []byte("audit:\n  max_age: 30s\n  max_size: 1 lot\n  keep: all\n"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "sluice.yaml:4:3") || !strings.Contains(err.Error(), "keep") {
		t.Errorf("unknown key: %v", err)
	}
	_, err = Parse("sluice.yaml", []byte("audit:\n  max_age: 30s\n  max_size: 1 lot\n"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `sluice.yaml:2:12: audit.max_age "30s": at least 1m0s`) ||
		!strings.Contains(err.Error(), `sluice.yaml:3:13: audit.max_size "1 lot": not a size`) {
		t.Errorf("both errors at once: %v", err)
	}
}
