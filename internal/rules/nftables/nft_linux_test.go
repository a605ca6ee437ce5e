package nftables

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/nstest"
)

// normalize drops indentation and blank lines, which nft's listings and
// the golden files use differently.
func normalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestInNamespace writes weft's tables through knftables into a fresh
// namespace and checks what nft lists against the listings weft's
// hand-written rendering produced before (testdata/listing-*.golden): the
// same tables, chains and rules. A converged Sync writes nothing; a rule
// deleted with nft comes back and counts as a repair.
func TestInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "nft")
	ns := nstest.NewNS(t, "nft")
	repaired := 0
	m := New(slog.New(slog.DiscardHandler), Options{Netns: ns, Repaired: func(n int) { repaired += n }})
	ctx := context.Background()
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		for _, f := range spec.Families() {
			fam, name := TableName(f)
			want, err := os.ReadFile(filepath.Join("testdata", "listing-"+f.Name()+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			got := nstest.Exec(t, ns, "nft", "list", "table", string(fam), name)
			if normalize(got) != normalize(string(want)) {
				t.Errorf("%s: nft lists %s %s as\n%s\nwant\n%s", what, fam, name, got, want)
			}
		}
	}
	check("installed")
	if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); strings.Contains(out, probeChain) {
		t.Errorf("the fully-random probe left a chain:\n%s", out)
	}

	before := nstest.Exec(t, ns, "nft", "-a", "list", "ruleset")
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if after := nstest.Exec(t, ns, "nft", "-a", "list", "ruleset"); after != before || repaired != 0 {
		t.Errorf("converged Sync rewrote (repairs %d):\n%s\nwas\n%s", repaired, after, before)
	}

	keepsrc := nstest.Exec(t, ns, "nft", "-a", "list", "chain", "ip", "flannel-ipv4", "keepsrc")
	h := regexp.MustCompile(`\sip daddr 10\.244\.1\.0/24 return # handle (\d+)`).FindStringSubmatch(keepsrc)
	if h == nil {
		t.Fatalf("no keepsrc rule handle in\n%s", keepsrc)
	}
	nstest.Exec(t, ns, "nft", "delete", "rule", "ip", "flannel-ipv4", "keepsrc", "handle", h[1])
	if err := m.Sync(ctx, spec); err != nil {
		t.Fatal(err)
	}
	check("repaired")
	if repaired != 1 {
		t.Errorf("repairs = %d, want 1", repaired)
	}

	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("after Cleanup:\n%s", out)
	}
}
