package flow

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/carets")

// TestCaretsInEveryScalarStyle renders the diagnostic of one expression
// error written in each YAML scalar style (plain, single- and
// double-quoted with escapes, a double-quoted string over two lines,
// literal and folded blocks) and holds it to its golden file: the caret
// is under the error, however the string is quoted. Run with -update to
// rewrite the golden files, and read each before committing it.
func TestCaretsInEveryScalarStyle(t *testing.T) {
	files, err := filepath.Glob("testdata/carets/*.yaml")
	if err != nil || len(files) < 6 {
		t.Fatalf("testdata/carets: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = load(t, string(src))
			ds, ok := schemas.AsDiagnostics(err)
			if !ok {
				t.Fatalf("want diagnostics, got %v", err)
			}
			got := schemas.Render(ds, map[string][]byte{"f.yaml": src})
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}
