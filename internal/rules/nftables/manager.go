package nftables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/internal/rules/ruleexec"
	"github.com/weftnet/weft/internal/rules/rulespec"
)

// probeChain is a chain checked (nft --check, nothing is written) in
// weft's IPv4 table to learn whether this nft and kernel can masquerade
// fully-random, as flannel does.
const probeChain = "weft-probe"

// Options are Manager's knobs.
type Options struct {
	// Netns is the named network namespace to work in; "" is the
	// caller's own.
	Netns string
	// NFT returns the knftables Interface of one of weft's tables; nil
	// means nft in Netns. Unit tests pass knftables fakes.
	NFT func(family knftables.Family, table string) (knftables.Interface, error)
	// Read reads one of weft's tables back; nil means over netlink in
	// Netns. Unit tests read their fakes.
	Read func(family knftables.Family, table string) (State, error)
	// Repaired, if set, is told how many problems (a rule or chain
	// missing, altered, added or out of place) a Sync fixed in a table
	// that weft had written with the same rules before: repairs, not
	// installs or changes of the desired rules.
	Repaired func(n int)
}

// Manager keeps weft's nftables tables. Its methods may be called from
// several goroutines; they run one at a time.
type Manager struct {
	log      *slog.Logger
	newNFT   func(family knftables.Family, table string) (knftables.Interface, error)
	read     func(family knftables.Family, table string) (State, error)
	repaired func(n int)

	mu          sync.Mutex // guards the fields below and serialises Sync/Cleanup
	nft         [2]knftables.Interface
	probed      bool
	fullyRandom bool
	installed   bool
	// written holds, per family, what weft last wrote and the table as
	// read back right after.
	written [2]written
}

type written struct {
	key string // wantKey of what was written; "" for nothing
	ref reference
}

// New returns a Manager; it touches nothing until Sync.
func New(log *slog.Logger, opts Options) *Manager {
	m := &Manager{log: log, newNFT: opts.NFT, read: opts.Read, repaired: opts.Repaired}
	if m.newNFT == nil {
		m.newNFT = func(family knftables.Family, table string) (knftables.Interface, error) {
			return newNFT(opts.Netns, family, table)
		}
	}
	if m.read == nil {
		m.read = func(family knftables.Family, table string) (State, error) {
			return readTable(opts.Netns, family, table)
		}
	}
	return m
}

// iface returns (making it once) the knftables Interface of family i.
func (m *Manager) iface(i int) (knftables.Interface, error) {
	if m.nft[i] != nil {
		return m.nft[i], nil
	}
	fam, name := TableName(rulespec.Spec{}.Families()[i])
	nft, err := m.newNFT(fam, name)
	if err != nil {
		return nil, err
	}
	m.nft[i] = nft
	return nft, nil
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
		if err := m.probe(ctx, spec.FullyRandom); err != nil {
			return err
		}
	}
	var errs []error
	for i, f := range spec.Families() {
		w, ok := Desired(f, spec, m.fullyRandom)
		if err := m.syncTable(ctx, i, w, ok); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.installed = true
	return nil
}

func (m *Manager) probe(ctx context.Context, wanted bool) error {
	nft, err := m.iface(0)
	if err != nil {
		return err
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Add(&knftables.Chain{Name: probeChain, Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	tx.Add(&knftables.Rule{Chain: probeChain, Rule: "masquerade fully-random"})
	err = nft.Check(ctx, tx)
	m.fullyRandom, m.probed = err == nil, true
	if wanted && !m.fullyRandom {
		m.log.Warn("nft cannot masquerade fully-random here; masquerading without it", "err", err)
	}
	return nil
}

// wantKey identifies the content of a Want, to tell a repair from a
// change of the desired rules.
func wantKey(w Want) string {
	tx := knftables.NewFake(w.Family, w.Name).NewTransaction()
	replace(tx, w)
	return tx.String()
}

// writeAttempts bounds how often one Sync writes a table that someone
// else changes between weft's write and its read-back.
const writeAttempts = 3

func (m *Manager) syncTable(ctx context.Context, i int, w Want, wanted bool) error {
	fam, name := TableName(rulespec.Spec{}.Families()[i])
	table := string(fam) + " " + name
	prev := &m.written[i]
	have, err := m.read(fam, name)
	if err != nil {
		return fmt.Errorf("read table %s: %w", table, err)
	}
	if !wanted {
		*prev = written{}
		if !have.Exists {
			return nil
		}
		m.log.Info("removing nftables table", "table", table)
		return m.remove(ctx, i, table)
	}
	key := wantKey(w)
	var problems []string
	repair := prev.key == key
	switch {
	case !have.Exists:
		problems = []string{"table missing"}
	case prev.key == "":
		problems = []string{"table not yet written by this agent"}
	case !repair:
		problems = []string{"desired rules changed"}
	case have.Equal(prev.ref.state):
		return nil
	default:
		problems = prev.ref.describeChange(have)
	}
	msg := "repairing nftables table"
	if !m.installed {
		msg = "installing nftables table"
	}
	m.log.Info(msg, "table", table, "problems", problems)
	nft, err := m.iface(i)
	if err != nil {
		return err
	}
	*prev = written{}
	for attempt := 1; ; attempt++ {
		tx := nft.NewTransaction()
		replace(tx, w)
		if err := nft.Run(ctx, tx); err != nil {
			return fmt.Errorf("write table %s: %w", table, err)
		}
		got, err := m.read(fam, name)
		if err != nil {
			return fmt.Errorf("read table %s back: %w", table, err)
		}
		shape := shapeProblems(got, w)
		if len(shape) == 0 {
			*prev = written{key: key, ref: newReference(got, w)}
			if repair && m.repaired != nil {
				m.repaired(len(problems))
			}
			return nil
		}
		if attempt == writeAttempts {
			return fmt.Errorf("write table %s: it changed while being written: %s", table, strings.Join(shape, "; "))
		}
		m.log.Info("nftables table changed while being written; writing again", "table", table, "problems", shape)
	}
}

// remove deletes family i's table.
func (m *Manager) remove(ctx context.Context, i int, table string) error {
	nft, err := m.iface(i)
	if err != nil {
		return err
	}
	tx := nft.NewTransaction()
	remove(tx)
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("delete table %s: %w", table, err)
	}
	return nil
}

// Cleanup deletes both of flannel's tables, for `weft cleanup` and for
// switching to iptables mode. A host without nft has nothing to delete.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written = [2]written{}
	m.installed = false
	var errs []error
	for i, f := range (rulespec.Spec{}).Families() {
		fam, name := TableName(f)
		table := string(fam) + " " + name
		have, err := m.read(fam, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("read table %s: %w", table, err))
			continue
		}
		if !have.Exists {
			continue
		}
		m.log.Info("removing nftables table", "table", table)
		err = m.remove(ctx, i, table)
		if errors.Is(err, ruleexec.ErrNotFound) {
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
