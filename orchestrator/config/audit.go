package config

import (
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

// Bounds of audit.max_age and audit.max_size: below them, the log would
// be dropped faster than a person could export it.
const (
	minAuditAge  = time.Minute
	minAuditSize = 1 << 10
)

// parseRetention checks audit.max_age and audit.max_size.
func parseRetention(file string, doc *schemas.Document, age, size string, ds *schemas.Diagnostics) AuditRetention {
	var r AuditRetention
	if age != "" {
		d, err := parseAge(age)
		switch {
		case err != nil:
			ds.Add(file, doc.Pos("/audit/max_age"), "config_bad_audit", "audit.max_age %q: not a duration (write 90d, 36h, 30m)", age)
		case d < minAuditAge:
			ds.Add(file, doc.Pos("/audit/max_age"), "config_bad_audit", "audit.max_age %q: at least %s", age, minAuditAge)
		default:
			r.MaxAge = d
		}
	}
	if size != "" {
		n, err := parseSize(size)
		switch {
		case err != nil:
			ds.Add(file, doc.Pos("/audit/max_size"), "config_bad_audit", "audit.max_size %q: not a size (write 1GiB, 500MiB, 64KiB, or a number of bytes)", size)
		case n < minAuditSize:
			ds.Add(file, doc.Pos("/audit/max_size"), "config_bad_audit", "audit.max_size %q: at least 1KiB", size)
		default:
			r.MaxSize = n
		}
	}
	return r
}

// parseAge reads a Go duration, or a whole number of days ("90d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// sizeUnits are the units of a size, longest first.
var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// parseSize reads a number of bytes with an optional unit (1GiB, 500MB).
func parseSize(s string) (int64, error) {
	unit := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, unit = num, u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return 0, strconv.ErrSyntax
	}
	return n * unit, nil
}
