package rules

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
)

// TestScanAndWatchInNamespace runs the netlink look and the notification
// subscription against a real namespace: each kind of NAT is found in
// the right family, weft's keepsrc counts as installed rather than
// foreign, looking changes nothing, and every nft change notifies.
func TestScanAndWatchInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "nft", "iptables-nft", "ip6tables-legacy")
	ns := nstest.NewNS(t, "ns")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := watchNFT(ctx, ns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	expectEvent := func(what string) {
		t.Helper()
		select {
		case <-events:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: no nftables notification", what)
		}
	}
	scan := func() natFound {
		t.Helper()
		f, err := scanNAT(ns)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	if f := scan(); f.keepSource != [2]bool{} || len(f.foreign[0])+len(f.foreign[1]) != 0 {
		t.Errorf("fresh namespace: %+v", f)
	}
	if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("looking created something:\n%s", out)
	}

	nstest.Exec(t, ns, "nft", "add table ip flannel-ipv4; add chain ip flannel-ipv4 keepsrc { type nat hook postrouting priority srcnat - 1; }")
	expectEvent("weft's table")
	if f := scan(); f.keepSource != [2]bool{true, false} || len(f.foreign[0])+len(f.foreign[1]) != 0 {
		t.Errorf("weft's keepsrc: %+v", f)
	}

	nstest.Exec(t, ns, "iptables-nft", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-j", "MASQUERADE")
	expectEvent("iptables-nft")
	nstest.Exec(t, ns, "nft", "add table inet kp; add chain inet kp pre { type nat hook prerouting priority dstnat; }")
	expectEvent("inet table")
	nstest.Exec(t, ns, "ip6tables-legacy", "-w", "-t", "nat", "-L")
	f := scan()
	want := [2][]string{
		{"iptables-nft nat table (nft table ip nat)", "nft table inet kp chain pre (type nat hook prerouting)"},
		{"nft table inet kp chain pre (type nat hook prerouting)", "ip6tables-legacy nat table"},
	}
	for i := range want {
		if !slices.Equal(f.foreign[i], want[i]) {
			t.Errorf("foreign[%d] = %q, want %q", i, f.foreign[i], want[i])
		}
	}

	cancel()
	for range events {
	}
}
