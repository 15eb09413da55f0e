package policy

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/ifc"
)

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func TestZZCPU(t *testing.T) {
	in := Input{
		Tool:  charge,
		Label: ifc.UntrustedFrom("user", "web:flights.example"),
		ArgLabels: map[string]ifc.Label{
			"amount": ifc.TrustedFrom("user"),
			"payee":  ifc.UntrustedFrom("web:flights.example"),
		},
		Args: map[string]any{"amount": int64(90), "payee": "acct_tap_air", "currency": "EUR"},
		Run:  Run{ID: "01J", Flow: "book", Step: "pay"},
	}
	for _, n := range []int{1, 20, 100} {
		var s *Set
		if n == 1 {
			s = mustLoadTools(t, builtinTools(t), file("one.yaml", "rules:\n  - name: untrusted-never-pays-alone\n    when: tool.privileged && label.integrity == \"untrusted\"\n    action: approve\n"))
		} else {
			s = mustLoadTools(t, builtinTools(t), DefaultFile(), benchRules(n-1))
		}
		runtime.LockOSThread()
		const N = 200000
		best := time.Hour
		for range 5 {
			start := threadCPU()
			for range N {
				s.Decide(in)
			}
			if d := (threadCPU() - start) / N; d < best {
				best = d
			}
		}
		runtime.UnlockOSThread()
		fmt.Printf("rules=%d thread-cpu %v/op\n", n, best)
	}
}
