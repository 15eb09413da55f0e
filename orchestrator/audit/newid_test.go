package audit

import (
	"testing"

	"github.com/oklog/ulid/v2"
)

// NewID makes ULIDs of the current time, none the same, with ten random
// bytes each.
func TestNewID(t *testing.T) {
	before := ulid.Now()
	seen := map[string]bool{}
	for range 1000 {
		s := NewID()
		id, err := ulid.ParseStrict(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if id.Time() < before || id.Time() > ulid.Now() {
			t.Fatalf("%q: time %d not between %d and now", s, id.Time(), before)
		}
		if seen[s] {
			t.Fatalf("%q made twice", s)
		}
		seen[s] = true
	}
	// The random part is random: the first entropy byte of a thousand ids
	// takes more than a few values.
	firsts := map[byte]bool{}
	for s := range seen {
		id, _ := ulid.ParseStrict(s)
		firsts[id.Entropy()[0]] = true
	}
	if len(firsts) < 100 {
		t.Errorf("the first random byte of 1,000 ids took %d values", len(firsts))
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID()
	}
}
