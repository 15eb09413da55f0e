package ifc

import (
	"encoding/json"
	"testing"
)

// benchLabel is the label of a typical argument: read from a page, joined
// with what the user gave, carrying one secrecy tag.
var benchLabel = Join(UntrustedFrom(WebSource("flights.example")), TrustedFrom(SourceUser).WithSecrecy("pii"))

func BenchmarkLabelMarshalJSON(b *testing.B) {
	for b.Loop() {
		if _, err := json.Marshal(benchLabel); err != nil {
			b.Fatal(err)
		}
	}
}

// labelJSON is the canonical form as encoding/json writes it from a
// struct: what AppendJSON must write, byte for byte.
type labelJSON struct {
	Integrity Integrity `json:"integrity"`
	Secrecy   []string  `json:"secrecy"`
	Sources   []string  `json:"sources"`
}

func TestAppendJSONEncodesAsEncodingJSON(t *testing.T) {
	odd := []string{"", "a\"b", `back\slash`, "<script>&", "tab\there", "nl\n", "é", "日本", "\u2028", "\x7f", "bad\xffutf8", "\x00"}
	cases := append(labels(0), New(Untrusted, odd, odd), New(Trusted, nil, nil), Label{}, benchLabel)
	for _, l := range cases {
		want, err := json.Marshal(labelJSON{l.integrity, nonNil(l.secrecy), nonNil(l.sources)})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
		if got, _ := json.Marshal(l); string(got) != string(want) {
			t.Errorf("json.Marshal:\n got %s\nwant %s", got, want)
		}
		if got := l.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Errorf("AppendJSON does not append: %s", got)
		}
	}
}

func BenchmarkLabelAppendJSON(b *testing.B) {
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = benchLabel.AppendJSON(buf[:0])
	}
}
