package policy

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	env, _ := newEnv()
	for _, s := range []string{
		`args.payee in registry.payees`,
		`registry.payees.exists(p, p == args.payee)`,
		`args.payee in registry["payees"]`,
	} {
		a, iss := env.Compile(s)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		est, err := env.EstimateCost(a, registrySizes{"payees": make([]string, 100)})
		fmt.Println(s, est.Min, est.Max, err)
	}
}
