package nftables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

// probeScript is checked (nft -c, nothing is written) to learn whether
// this nft and kernel can masquerade fully-random, as flannel does.
const probeScript = `table ip weft-probe {
	chain c {
		type nat hook postrouting priority srcnat; policy accept;
		masquerade fully-random
	}
}
`

// Options are Manager's knobs.
type Options struct {
	// Runner runs nft; nil means ruleexec.Exec{}.
	Runner ruleexec.Runner
}

// Manager keeps weft's nftables tables. Its methods may be called from
// several goroutines; they run one at a time.
type Manager struct {
	log *slog.Logger
	run ruleexec.Runner

	mu          sync.Mutex // guards the fields below and serialises Sync/Cleanup
	probed      bool
	fullyRandom bool
	installed   bool
	// written holds, per family, the definition weft last wrote and the
	// listing (normalised) that means the table is still as written.
	written [2]written
	// warnedFormat is set once nft has listed a table differently from
	// weft's rendering of it.
	warnedFormat bool
}

type written struct{ def, listing string }

// New returns a Manager; it touches nothing until Sync.
func New(log *slog.Logger, opts Options) *Manager {
	r := opts.Runner
	if r == nil {
		r = ruleexec.Exec{}
	}
	return &Manager{log: log, run: r}
}

// Sync makes flannel-ipv4 and flannel-ipv6 hold exactly what spec wants,
// rewriting a table whose rules changed since weft wrote it and deleting
// one spec no longer wants.
func (m *Manager) Sync(ctx context.Context, spec rulespec.Spec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("invalid spec: %w", err)
	}
	spec = spec.Normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.probed {
		_, err := m.run.Run(ctx, []byte(probeScript), "nft", "-c", "-f", "-")
		if errors.Is(err, ruleexec.ErrNotFound) {
			return err
		}
		m.fullyRandom, m.probed = err == nil, true
		if spec.FullyRandom && !m.fullyRandom {
			m.log.Warn("nft cannot masquerade fully-random here; masquerading without it", "err", err)
		}
	}
	tables, err := m.tables(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, f := range spec.Families() {
		if err := m.syncTable(ctx, i, f, Render(f, spec, m.fullyRandom), tables); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.installed = true
	return nil
}

func (m *Manager) syncTable(ctx context.Context, i int, f rulespec.Family, def string, tables map[string]bool) error {
	fam, name := TableName(f)
	exists := tables[fam+" "+name]
	w := &m.written[i]
	if def == "" {
		*w = written{}
		if !exists {
			return nil
		}
		m.log.Info("removing nftables table", "table", fam+" "+name)
		if _, err := m.run.Run(ctx, []byte(deleteScript(fam, name)), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("delete table %s %s: %w", fam, name, err)
		}
		return nil
	}
	var problems []string
	switch {
	case !exists:
		problems = []string{"table missing"}
	case w.def == "":
		problems = []string{"table not yet written by this agent"}
	case w.def != def:
		problems = []string{"desired rules changed"}
	default:
		listing, err := m.list(ctx, fam, name)
		if err != nil {
			return err
		}
		if listing == w.listing {
			return nil
		}
		problems = describeChange(w.listing, listing)
	}
	msg := "repairing nftables table"
	if !m.installed {
		msg = "installing nftables table"
	}
	m.log.Info(msg, "table", fam+" "+name, "problems", problems)
	// nft lists a table the way weft renders it, so the rendering is the
	// reference for later Syncs, and a change someone makes between the
	// write and the check below is seen as one: the table is written
	// again. If the same listing comes back twice, this nft version prints
	// the table differently, and that listing becomes the reference.
	want := normalize(def)
	var prev string
	for attempt := 0; ; attempt++ {
		if _, err := m.run.Run(ctx, []byte(replaceScript(fam, name, def)), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("write table %s %s: %w", fam, name, err)
		}
		listing, err := m.list(ctx, fam, name)
		if err != nil {
			return err
		}
		switch {
		case listing == want:
			*w = written{def: def, listing: want}
			return nil
		case attempt > 0 && listing == prev:
			if !m.warnedFormat {
				m.log.Warn("nft lists weft's table differently from how weft writes it; comparing with its listing instead",
					"table", fam+" "+name, "differences", describeChange(want, listing))
				m.warnedFormat = true
			}
			*w = written{def: def, listing: listing}
			return nil
		case attempt == 2:
			*w = written{}
			return fmt.Errorf("write table %s %s: it changed while being written: %s",
				fam, name, strings.Join(describeChange(want, listing), "; "))
		}
		prev = listing
	}
}

// tables returns the tables nft lists, as "family name" keys.
func (m *Manager) tables(ctx context.Context) (map[string]bool, error) {
	out, err := m.run.Run(ctx, nil, "nft", "list", "tables")
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			got[rest] = true
		}
	}
	return got, nil
}

// list returns the table's listing, normalised.
func (m *Manager) list(ctx context.Context, fam, name string) (string, error) {
	out, err := m.run.Run(ctx, nil, "nft", "list", "table", fam, name)
	if err != nil {
		return "", fmt.Errorf("list table %s %s: %w", fam, name, err)
	}
	return normalize(string(out)), nil
}

// normalize drops indentation and blank lines, which nft's listings and
// weft's rendering use differently.
func normalize(s string) string {
	return strings.Join(listingLines(s), "\n") + "\n"
}

// Cleanup deletes both of flannel's tables, for `weft cleanup` and for
// switching to iptables mode. A host without nft has nothing to delete.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written = [2]written{}
	m.installed = false
	tables, err := m.tables(ctx)
	if errors.Is(err, ruleexec.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var script strings.Builder
	for _, f := range (rulespec.Spec{}).Families() {
		fam, name := TableName(f)
		if tables[fam+" "+name] {
			m.log.Info("removing nftables table", "table", fam+" "+name)
			script.WriteString(deleteScript(fam, name))
		}
	}
	if script.Len() == 0 {
		return nil
	}
	if _, err := m.run.Run(ctx, []byte(script.String()), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("delete flannel nftables tables: %w", err)
	}
	return nil
}
