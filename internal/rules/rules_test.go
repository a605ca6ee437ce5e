package rules

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// driftingNFT is nft on a host without iptables whose listing of weft's
// table changes whenever the test says, so that every Sync after a drift
// rewrites the table.
type driftingNFT struct {
	mu      sync.Mutex
	written []string // every table definition written
	drift   int
}

func (d *driftingNFT) handle(c ruleexec.Call) ([]byte, error) {
	if c.Name != "nft" {
		return nil, ruleexec.NotFound(c.Name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch args := strings.Join(c.Args, " "); {
	case args == "list tables":
		if len(d.written) > 0 {
			return []byte("table ip flannel-ipv4\n"), nil
		}
		return nil, nil
	case strings.HasPrefix(args, "list table"):
		return []byte(strings.Repeat("x", d.drift)), nil
	case args == "-f -":
		d.written = append(d.written, c.Stdin)
	}
	return nil, nil
}

func (d *driftingNFT) last() (int, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.written) == 0 {
		return 0, ""
	}
	return len(d.written), d.written[len(d.written)-1]
}

func TestRunResyncsLatestSpec(t *testing.T) {
	nft := &driftingNFT{}
	m, err := New(NFTables, slog.New(slog.DiscardHandler), WithRunner(&ruleexec.Fake{Handle: nft.handle}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, 10*time.Millisecond) }()

	s := Spec{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"), Masq: true}
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	if err := m.Sync(ctx, s); err != nil {
		t.Fatal(err)
	}
	n, _ := nft.last()
	nft.mu.Lock()
	nft.drift++
	nft.mu.Unlock()
	nstest.Eventually(t, 2*time.Second, func() error {
		if got, def := nft.last(); got <= n || !strings.Contains(def, "10.244.9.0/24") {
			return fmt.Errorf("Run has not rewritten the drifted table with the latest spec (%d writes)", got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New("ipvs", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := New(IPTables, slog.New(slog.DiscardHandler), WithIPTablesVariant("nf")); err == nil {
		t.Error("unknown variant accepted")
	}
	if ModeFor(true) != NFTables || ModeFor(false) != IPTables {
		t.Error("ModeFor")
	}
}
