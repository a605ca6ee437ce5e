package nftables

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/weftnet/weft/internal/rules/rulespec"
)

// Fake stands in for nft and the kernel in unit tests: a knftables.Fake
// per family's table, read back as a State whose rule keys are the rule
// texts. Use it through Options.
type Fake struct {
	Tables [2]*knftables.Fake
	// NoFullyRandom makes the fully-random probe fail.
	NoFullyRandom bool

	mu     sync.Mutex
	writes int
	reads  int
	// AfterWrite, if set, runs after each write (with no lock held), to
	// change the tables behind the Manager's back.
	AfterWrite func(writes int)
}

// NewFake returns a Fake with both tables absent.
func NewFake() *Fake {
	var f Fake
	for i, fam := range (rulespec.Spec{}).Families() {
		family, name := TableName(fam)
		f.Tables[i] = knftables.NewFake(family, name)
	}
	return &f
}

// Options points o at the fake.
func (f *Fake) Options(o *Options) {
	o.NFT = func(family knftables.Family, _ string) (knftables.Interface, error) {
		return fakeIface{Fake: f.table(family), f: f}, nil
	}
	o.Read = func(family knftables.Family, _ string) (State, error) {
		f.mu.Lock()
		f.reads++
		f.mu.Unlock()
		return FakeState(f.table(family)), nil
	}
}

// Counts returns how many writes (transactions run) and reads happened.
func (f *Fake) Counts() (writes, reads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.reads
}

func (f *Fake) table(family knftables.Family) *knftables.Fake {
	if family == knftables.IPv6Family {
		return f.Tables[1]
	}
	return f.Tables[0]
}

type fakeIface struct {
	*knftables.Fake
	f *Fake
}

func (i fakeIface) Run(ctx context.Context, tx *knftables.Transaction) error {
	if err := i.Fake.Run(ctx, tx); err != nil {
		return err
	}
	i.f.mu.Lock()
	i.f.writes++
	n, after := i.f.writes, i.f.AfterWrite
	i.f.mu.Unlock()
	if after != nil {
		after(n)
	}
	return nil
}

func (i fakeIface) Check(ctx context.Context, tx *knftables.Transaction) error {
	if i.f.NoFullyRandom {
		return errors.New("Error: fully-random not supported")
	}
	return i.Fake.Check(ctx, tx)
}

// FakeState reads a knftables.Fake's table as a State: chains by name,
// rule keys the rule text (and comment).
func FakeState(f *knftables.Fake) State {
	f.RLock()
	defer f.RUnlock()
	if f.Table == nil {
		return State{}
	}
	st := State{Exists: true}
	for _, name := range slices.Sorted(maps.Keys(f.Table.Chains)) {
		c := f.Table.Chains[name]
		cs := ChainState{Name: name}
		if c.Type != nil {
			cs.Type = string(*c.Type)
		}
		if c.Hook != nil {
			cs.Hook = string(*c.Hook)
		}
		if c.Priority != nil {
			cs.Priority, _ = knftables.ParsePriority(knftables.IPv4Family, string(*c.Priority))
		}
		for _, r := range c.Rules {
			k := r.Rule
			if r.Comment != nil {
				k += " comment " + *r.Comment
			}
			cs.Rules = append(cs.Rules, k)
		}
		st.Chains = append(st.Chains, cs)
	}
	return st
}
