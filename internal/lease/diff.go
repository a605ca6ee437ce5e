package lease

import (
	"cmp"
	"net/netip"
	"slices"
)

// Changes is how one snapshot of leases differs from the previous one.
// Each list is sorted by subnet.
type Changes struct {
	Added, Removed, Changed []Lease
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// Diff compares two snapshots keyed by subnet (Lease.Key). Changed holds the next
// version of leases whose Attrs (compared with Attrs.Equal) or IPv6 subnet
// differ; a renewal that only moves the expiration, or turns a lease into a
// reservation, is no change to the data plane. Removed holds the previous
// version. If a snapshot lists a subnet twice, the later entry counts.
//
// Snapshots from a store are sorted by subnet; Diff then merges them in
// one pass without building maps, which matters when thousands of leases
// are compared several times a second.
func Diff(prev, next []Lease) Changes {
	if bySubnet(prev) && bySubnet(next) {
		return diffSorted(prev, next)
	}
	return diffMaps(prev, next)
}

func bySubnet(ls []Lease) bool {
	return slices.IsSortedFunc(ls, func(a, b Lease) int { return cmpPrefix(a.Key(), b.Key()) })
}

// diffSorted is Diff for two snapshots sorted by subnet.
func diffSorted(prev, next []Lease) Changes {
	var c Changes
	// last returns the index of the last lease of the run of equal subnets
	// starting at i: the one that counts.
	last := func(ls []Lease, i int) int {
		for i+1 < len(ls) && ls[i+1].Key() == ls[i].Key() {
			i++
		}
		return i
	}
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next):
			i = last(prev, i)
			c.Removed = append(c.Removed, prev[i])
			i++
		case i == len(prev):
			j = last(next, j)
			c.Added = append(c.Added, next[j])
			j++
		default:
			switch cmpPrefix(prev[i].Key(), next[j].Key()) {
			case -1:
				i = last(prev, i)
				c.Removed = append(c.Removed, prev[i])
				i++
			case 1:
				j = last(next, j)
				c.Added = append(c.Added, next[j])
				j++
			default:
				i, j = last(prev, i), last(next, j)
				p, n := prev[i], next[j]
				if !p.Attrs.Equal(n.Attrs) || p.IPv6Subnet != n.IPv6Subnet {
					c.Changed = append(c.Changed, n)
				}
				i++
				j++
			}
		}
	}
	return c
}

func diffMaps(prev, next []Lease) Changes {
	before := index(prev)
	after := index(next)
	var c Changes
	for sn, n := range after {
		p, ok := before[sn]
		switch {
		case !ok:
			c.Added = append(c.Added, n)
		case !p.Attrs.Equal(n.Attrs) || p.IPv6Subnet != n.IPv6Subnet:
			c.Changed = append(c.Changed, n)
		}
	}
	for sn, p := range before {
		if _, ok := after[sn]; !ok {
			c.Removed = append(c.Removed, p)
		}
	}
	for _, l := range [][]Lease{c.Added, c.Removed, c.Changed} {
		slices.SortFunc(l, func(a, b Lease) int { return cmpPrefix(a.Key(), b.Key()) })
	}
	return c
}

func index(ls []Lease) map[netip.Prefix]Lease {
	m := make(map[netip.Prefix]Lease, len(ls))
	for _, l := range ls {
		m[l.Key()] = l
	}
	return m
}

func cmpPrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
