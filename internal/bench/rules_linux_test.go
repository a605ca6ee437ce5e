package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/rules"
)

func TestKubeProxyLike(t *testing.T) {
	for _, n := range []int{10, 1000, 10000} {
		script := kubeProxyLike(n)
		nat, filter, _ := strings.Cut(script, "*filter\n")
		if got := strings.Count(nat, "\n-A ") + strings.Count(filter, "\n-A "); got < n || got > n+4 {
			t.Errorf("kubeProxyLike(%d) has %d rules", n, got)
		}
		if strings.Count(script, "COMMIT\n") != 2 {
			t.Errorf("kubeProxyLike(%d) does not commit nat and filter", n)
		}
	}
}

// TestRulesResyncInNamespace measures each mode on a small rule set: the
// rules load, weft installs beside them, every resync and repair is timed,
// and the namespace is gone afterwards.
func TestRulesResyncInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.UniqueName("br")
	for _, m := range rulesModes {
		t.Run(m.name, func(t *testing.T) {
			need := []string{m.loader}
			if m.mode == rules.NFTables {
				need = append(need, "nft")
			}
			nstest.RequireTools(t, need...)
			res, err := measureRulesResync(context.Background(), ns, m.mode, m.variant, m.loader, rulesSizes{other: 200, resyncs: 3, repairs: 2})
			if err != nil {
				t.Fatal(err)
			}
			if res.ConvergedMs.N != 3 || res.RepairMs.N != 2 || !(res.ConvergedMs.Min > 0) || res.OtherRules != 200 {
				t.Errorf("result %+v", res)
			}
			if netns.Exists(ns) {
				t.Errorf("namespace %s left behind", ns)
			}
		})
	}
}
