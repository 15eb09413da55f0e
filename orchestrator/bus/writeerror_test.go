package bus

import "testing"

// The lines nats-server (v2.15) logs when it cannot write its store are
// reported with their stream and error; other lines, refusals among them,
// are not.
func TestWriteErrorsAreReported(t *testing.T) {
	const enospc = "write /s/jetstream/$G/streams/SLUICE_AUDIT/msgs/1.blk: no space left on device"
	for _, tc := range []struct {
		warn          bool
		line          string
		stream, cause string
	}{
		{false, "JetStream failed to store a msg on stream '$G > SLUICE_AUDIT': " + enospc, "SLUICE_AUDIT", enospc},
		{false, "JetStream stream '$G > KV_SLUICE_RUNS' critical write error: " + enospc, "KV_SLUICE_RUNS", enospc},
		{false, "Filestore [KV_SLUICE_STEPS] Critical write error: " + enospc, "KV_SLUICE_STEPS", enospc},
		{true, "Filesystem permission denied while writing msg, disabling JetStream: open /s/x: permission denied", "", "open /s/x: permission denied"},
		{false, "JetStream out of File resources, will be DISABLED", "", "no space left on device"},
		{false, "JetStream out of resources, will be DISABLED", "", "no space left on device"},
		{false, "JetStream out of space, will be DISABLED", "", "no space left on device"},
		{false, `nkey:UABC - "$G/nkey:UABC" - Publish Violation - Subject "sluice.x"`, "-", ""},
		{false, "JetStream file resource limits exceeded for server", "-", ""},
		{true, "Filestore [SLUICE_AUDIT] Resource not found: open /x: no such file or directory", "-", ""},
	} {
		var got []string
		l := &logger{onWriteError: func(stream, cause string) { got = append(got, stream, cause) }, names: func(s string) string { return s }}
		if tc.warn {
			l.Warnf("%s", tc.line)
		} else {
			l.Errorf("%s", tc.line)
		}
		if tc.stream == "-" {
			if got != nil {
				t.Errorf("%q reported as a write error: %q", tc.line, got)
			}
			continue
		}
		if len(got) != 2 || got[0] != tc.stream || got[1] != tc.cause {
			t.Errorf("%q: reported %q, want stream %q cause %q", tc.line, got, tc.stream, tc.cause)
		}
	}
}
