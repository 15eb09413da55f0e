package schemas

import (
	"reflect"
	"testing"
)

func TestSplitLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src  string
		want []string
	}{
		{"", []string{""}},
		{"a", []string{"a"}},
		{"a\n", []string{"a", ""}},
		{"a\r\nb", []string{"a", "b"}},
		{"a\rb\nc", []string{"a", "b", "c"}},
		{"a\u2028b\u0085c", []string{"a", "b", "c"}},
		{"\r\r\n", []string{"", "", ""}},
	}
	for _, tt := range tests {
		if got := SplitLines(tt.src); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitLines(%q) = %q, want %q", tt.src, got, tt.want)
		}
	}
}
