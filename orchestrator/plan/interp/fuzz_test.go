package interp

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var positioned = regexp.MustCompile(`^plan\.star:(\d+):(\d+): `)

// FuzzCompile: Compile never panics, and each of its errors starts with
// a position inside the program.
func FuzzCompile(f *testing.F) {
	for _, src := range corpus {
		f.Add(src)
	}
	f.Add("xs = []\nxs.append(1)\n")
	f.Add("load('x', 'y')\nwhile True:\n    pass\n")
	f.Fuzz(func(t *testing.T, src string) {
		_, err := Compile("plan.star", src, testTools)
		if err == nil {
			return
		}
		n := strings.Count(src, "\n") + strings.Count(src, "\r") + 2
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, "plan.star: and ") {
				continue
			}
			m := positioned.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("error without a position: %q", line)
			}
			if l, _ := strconv.Atoi(m[1]); l < 1 || l > n {
				t.Fatalf("line %d outside the program: %q", l, line)
			}
		}
	})
}

// FuzzRun: a program that compiles runs to an end under small limits
// without an internal error, and a failure names its place when it has
// one.
func FuzzRun(f *testing.F) {
	for _, src := range corpus {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile("plan.star", src, testTools)
		if err != nil {
			return
		}
		wa, _, _ := worlds()
		res := p.Run(t.Context(), wa.host(), wa.inputs(), Limits{Steps: 10000, Memory: 1 << 20, Time: DefaultTime})
		switch res.Status {
		case Completed, Held:
		case Failed:
			if strings.Contains(res.Error, "internal error") {
				t.Fatalf("%s\n%s", res.Error, src)
			}
		default:
			t.Fatalf("status %q", res.Status)
		}
	})
}
