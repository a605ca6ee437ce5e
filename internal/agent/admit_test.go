package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
)

// A /25 written over a live peer's /24 never reaches the backend: the
// agent logs one ERROR line naming both keys when the refusal starts (not
// one per snapshot), counts it, and one INFO line when the key is deleted.
func TestOverlappingLeaseIsRefused(t *testing.T) {
	f := start(t, "/coreos.com/network", "")
	// SubnetMax keeps the agent's own random lease off the subnets the
	// test writes (it once drew 10.244.99.0/24 itself); it bounds only
	// what this host leases, not which peers it takes.
	f.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "SubnetMax": "10.244.90.0", "Backend": {"Type": "host-gw"}}`)
	f.waitReady(t)
	const live, bogus = "/coreos.com/network/subnets/10.244.99.0-24", "/coreos.com/network/subnets/10.244.99.0-25"
	f.put(t, live, `{"PublicIP":"10.4.7.22","PublicIPv6":null,"BackendType":"host-gw"}`)
	f.put(t, bogus, `{"PublicIP":"10.4.7.99","PublicIPv6":null,"BackendType":"host-gw"}`)
	// A later change proves the snapshot with the bogus lease was applied.
	f.put(t, "/coreos.com/network/subnets/10.244.98.0-24", `{"PublicIP":"10.4.7.23","PublicIPv6":null,"BackendType":"host-gw"}`)
	nstest.Eventually(t, 5*time.Second, func() error {
		if s := f.rec.last(); !contains(s, "10.244.98.0/24") || !contains(s, "10.244.99.0/24") || contains(s, "10.244.99.0/25") {
			return fmt.Errorf("backend saw %v", s)
		}
		return nil
	})
	errLine := func() int {
		n := 0
		for _, line := range strings.Split(f.logs.String(), "\n") {
			if strings.Contains(line, "level=ERROR") && strings.Contains(line, "lease=10.244.99.0-25") &&
				strings.Contains(line, "10.244.99.0-25 (PublicIP 10.4.7.99) overlaps 10.244.99.0-24 (PublicIP 10.4.7.22), which was there first") {
				n++
			}
		}
		return n
	}
	if n := errLine(); n != 1 {
		t.Fatalf("%d ERROR lines for the refusal, want 1:\n%s", n, f.logs.String())
	}
	m := f.scrape(t)
	for _, want := range []string{`weft_leases_refused{reason="overlap"} 1`, `weft_leases_refused_total{reason="overlap"} 1`, `weft_leases_refused{reason="malformed"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	if _, err := f.cli.Delete(context.Background(), bogus); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(f.logs.String(), `level=INFO msg="lease no longer refused" lease=10.244.99.0-25`) {
			return fmt.Errorf("no INFO line ending the refusal")
		}
		if m := f.scrape(t); !strings.Contains(m, `weft_leases_refused{reason="overlap"} 0`) || !strings.Contains(m, `weft_leases_refused_total{reason="overlap"} 1`) {
			return fmt.Errorf("gauge not back to 0, or counter changed")
		}
		return nil
	})
	if n := errLine(); n != 1 {
		t.Errorf("%d ERROR lines for the refusal after it ended, want 1", n)
	}
}
