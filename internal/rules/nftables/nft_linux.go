package nftables

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/rules/ruleexec"
)

// newNFT returns knftables' nft for one table, running nft in the named
// namespace ("" is the caller's): a program inherits the namespace of the
// locked thread that forks it. A missing nft is ruleexec.ErrNotFound.
func newNFT(ns string, family knftables.Family, table string) (knftables.Interface, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, ruleexec.NotFound("nft")
	}
	var nft knftables.Interface
	err := netns.Do(ns, func() error {
		var err error
		nft, err = knftables.New(family, table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("use nft for table %s %s: %w", family, table, err)
	}
	if ns == "" {
		return nft, nil
	}
	return nsNFT{Interface: nft, ns: ns}, nil
}

// nsNFT runs an Interface's nft commands in a named namespace.
type nsNFT struct {
	knftables.Interface
	ns string
}

func (n nsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	return netns.Do(n.ns, func() error { return n.Interface.Run(ctx, tx) })
}

func (n nsNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	return netns.Do(n.ns, func() error { return n.Interface.Check(ctx, tx) })
}

// hookNames are the netfilter hook numbers of the ip and ip6 families.
var hookNames = map[gnft.ChainHook]string{
	*gnft.ChainHookPrerouting:  "prerouting",
	*gnft.ChainHookInput:       "input",
	*gnft.ChainHookForward:     "forward",
	*gnft.ChainHookOutput:      "output",
	*gnft.ChainHookPostrouting: "postrouting",
}

// readTable reads one table over netlink in the named namespace. It only
// dumps, so it neither creates the table nor causes nftables
// notifications, and it needs no nft program. A kernel without nf_tables
// has no table.
func readTable(ns string, family knftables.Family, table string) (State, error) {
	fam := gnft.TableFamilyIPv4
	if family == knftables.IPv6Family {
		fam = gnft.TableFamilyIPv6
	}
	var st State
	err := netns.Do(ns, func() error {
		// A connection of its own per call: opened on this thread, so in
		// this namespace, and closed before the thread leaves it.
		c, err := gnft.New()
		if err != nil {
			return err
		}
		t, err := c.ListTableOfFamily(table, fam)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
				return nil
			}
			return fmt.Errorf("get table: %w", err)
		}
		st.Exists = true
		chains, err := c.ListChainsOfTableFamily(fam)
		if err != nil {
			return fmt.Errorf("list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != table {
				continue
			}
			cs := ChainState{Name: ch.Name, Type: string(ch.Type)}
			if ch.Hooknum != nil {
				cs.Hook = hookNames[*ch.Hooknum]
				if cs.Hook == "" {
					cs.Hook = fmt.Sprintf("hook%d", *ch.Hooknum)
				}
			}
			if ch.Priority != nil {
				cs.Priority = int(*ch.Priority)
			}
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
			}
			for _, r := range rules {
				k, err := ruleKey(byte(fam), r)
				if err != nil {
					// Not one of weft's rules, which all encode: a key
					// no reference holds, so the table is rewritten.
					k = fmt.Sprintf("handle %d (%v)", r.Handle, err)
				}
				cs.Rules = append(cs.Rules, k)
			}
			st.Chains = append(st.Chains, cs)
		}
		return nil
	})
	if err != nil {
		return State{}, fmt.Errorf("read nftables table %s %s: %w", family, table, err)
	}
	return st, nil
}

// ruleKey encodes a rule's expressions (and comment) as the kernel would
// be sent them: equal keys, equal rules.
func ruleKey(fam byte, r *gnft.Rule) (string, error) {
	var b []byte
	for _, e := range r.Exprs {
		m, err := expr.Marshal(fam, e)
		if err != nil {
			return "", fmt.Errorf("encode rule expression %T: %w", e, err)
		}
		b = append(b, m...)
	}
	b = append(b, r.UserData...)
	return hex.EncodeToString(b), nil
}
