package kernel

import (
	"context"
	"net/netip"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/nstest"
)

// TestWatchAddrs sees an address come and go on eth0 of hostNS's namespace.
func TestWatchAddrs(t *testing.T) {
	ns, _, eth0 := hostNS(t)
	nsh, err := vns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addrs, err := WatchAddrs(ctx, &nsh, func(err error) { t.Log(err) })
	if err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, ns, "ip", "addr", "add", "10.9.0.1/32", "dev", "eth0")
	nstest.Exec(t, ns, "ip", "addr", "del", "10.9.0.1/32", "dev", "eth0")
	want := []AddrEvent{
		{LinkIndex: eth0, Prefix: netip.MustParsePrefix("10.9.0.1/32"), Added: true},
		{LinkIndex: eth0, Prefix: netip.MustParsePrefix("10.9.0.1/32")},
	}
	deadline := time.After(2 * time.Second)
	for len(want) > 0 {
		select {
		case e := <-addrs:
			if e == want[0] {
				want = want[1:]
			}
		case <-deadline:
			t.Fatalf("not reported within 2s: %+v", want)
		}
	}
	cancel()
	for range addrs {
	}
}
