package e2e

import (
	"strings"
	"testing"
)

// The files worker reads under its granted root, labels what it read
// untrusted, and refuses paths that leave the root.
func TestFilesWorker(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"sluice.yaml":    "workers:\n  - manifest: builtin:files\n    grants: {files: {root: ./files}}\n",
		"files/note.txt": "meet at 10",
		"read.yaml":      "name: read\ninputs: {path: {type: string}}\nsteps:\n  - {id: r, call: files.read, with: {path: \"${inputs.path}\"}}\noutputs: {text: \"${steps.r.output.content}\"}\n",
	})
	r := w.sluice("run", "read.yaml", "--input", "path=note.txt", "--json")
	run := decodeRun(t, r.stdout)
	if r.code != 0 || run.Outputs["text"] != "meet at 10" {
		t.Fatalf("read: exit %d %+v", r.code, run)
	}
	for _, p := range []string{"../sluice.yaml", "/etc/passwd", "files/../../sluice.yaml"} {
		r := w.sluice("run", "read.yaml", "--input", "path="+p, "--json")
		run := decodeRun(t, r.stdout)
		if r.code != 1 || run.Status != "failed" {
			t.Fatalf("read %s: exit %d status %s", p, r.code, run.Status)
		}
		if !strings.Contains(r.stdout, "bad_arguments") {
			t.Errorf("read %s: %s", p, r.stdout)
		}
	}
}
