// Package extiface picks the host interface that carries traffic between
// hosts, from flanneld's flags and in flanneld's order:
//
//  1. each --iface, a name or an IP address (the interface holding it);
//     the first that exists wins
//  2. each --iface-regex: the first interface with an IPv4 address the
//     pattern matches, else the first whose name it matches
//  3. --iface-can-reach: the interface the route to that address leaves by
//  4. none of these: the interface holding --public-ip, else the interface
//     of the default route
//
// Its address is, in this order: --public-ip when the chosen interface
// holds it, the address the selection matched (an --iface IP, a regex
// match, the route's source), or the interface's first global unicast IPv4
// address. Its IPv6 address is chosen the same way from --public-ipv6 and
// the interface's global IPv6 addresses (permanent ones first), and the
// selection flags accept IPv6 too: --iface with an IPv6 address,
// --iface-regex matched against IPv6 addresses after IPv4 ones,
// --iface-can-reach with an IPv6 destination. flannel's regex and
// can-reach look at IPv4 only (flannel-io/flannel#2081), and with
// --public-ip and --public-ipv6 both set it could pick the two from
// different interfaces (flannel-io/flannel#1596); here both addresses
// always come from the one chosen interface, or from the flags. Its IPv6 address is chosen the same way from --public-ipv6 and
// the interface's global IPv6 addresses (permanent ones first), and the
// selection flags accept IPv6 too: --iface with an IPv6 address,
// --iface-regex matched against IPv6 addresses after IPv4 ones,
// --iface-can-reach with an IPv6 destination. flannel's regex and
// can-reach look at IPv4 only (flannel-io/flannel#2081), and with
// --public-ip and --public-ipv6 both set it could pick the two from
// different interfaces (flannel-io/flannel#1596); here both addresses
// always come from the one chosen interface, or from the flags. Preferring --public-ip is a small departure from flannel, which
// takes the interface's first address even when --public-ip is another
// address of the same interface, and then host-gw refuses to start.
//
// The decision is a pure function of a snapshot of the host's interfaces
// (choose); only collecting the snapshot talks to the kernel.
package extiface

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/backend"
)

// Options are flanneld's interface-selection flags, as given.
type Options struct {
	Ifaces        []string // --iface, repeatable: interface name or IP address
	IfaceRegex    []string // --iface-regex, repeatable
	IfaceCanReach string   // --iface-can-reach: an IP address
	PublicIP      string   // --public-ip
	PublicIPv6    string   // --public-ipv6
}

// ifaceInfo is one interface of the snapshot.
type ifaceInfo struct {
	Name     string
	Index    int
	MTU      int
	Loopback bool
	Addrs    []netip.Addr // IPv4, in the kernel's order
	Addrs6   []netip.Addr // global IPv6, preferred (permanent) ones first
}

func (i ifaceInfo) holds(a netip.Addr) bool {
	for _, x := range i.Addrs {
		if x == a {
			return true
		}
	}
	for _, x := range i.Addrs6 {
		if x == a {
			return true
		}
	}
	return false
}

// snapshot is what choose decides from.
type snapshot struct {
	ifaces []ifaceInfo // by index
	// defaultIndex is the interface of the IPv4 default route with the
	// lowest metric; 0 when there is none.
	defaultIndex int
	// reach looks up the route to dst (ip route get DST) and returns its
	// interface and preferred source; only called for --iface-can-reach.
	reach func(dst netip.Addr) (index int, src netip.Addr, err error)
}

func (s snapshot) byIndex(idx int) (ifaceInfo, bool) {
	for _, i := range s.ifaces {
		if i.Index == idx {
			return i, true
		}
	}
	return ifaceInfo{}, false
}

func (s snapshot) byName(name string) (ifaceInfo, bool) {
	for _, i := range s.ifaces {
		if i.Name == name {
			return i, true
		}
	}
	return ifaceInfo{}, false
}

func (s snapshot) holding(a netip.Addr) (ifaceInfo, bool) {
	for _, i := range s.ifaces {
		if i.holds(a) {
			return i, true
		}
	}
	return ifaceInfo{}, false
}

func parseIPv4(flag, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q: not an IPv4 address", flag, s)
	}
	return a, nil
}

func parseIPv6(flag, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %q: not an IPv6 address", flag, s)
	}
	return a, nil
}

// choose applies the selection order to a snapshot.
func choose(s snapshot, o Options) (backend.ExternalInterface, error) {
	var publicIP netip.Addr
	if o.PublicIP != "" {
		var err error
		if publicIP, err = parseIPv4("--public-ip", o.PublicIP); err != nil {
			return backend.ExternalInterface{}, err
		}
	}
	var publicIPv6 netip.Addr
	if o.PublicIPv6 != "" {
		var err error
		if publicIPv6, err = parseIPv6("--public-ipv6", o.PublicIPv6); err != nil {
			return backend.ExternalInterface{}, err
		}
	}

	var (
		chosen  ifaceInfo
		matched netip.Addr // the address the selection matched, if any
		err     error
	)
	switch {
	case len(o.Ifaces) > 0:
		chosen, matched, err = byIface(s, o.Ifaces)
	case len(o.IfaceRegex) > 0:
		chosen, matched, err = byRegex(s, o.IfaceRegex)
	case o.IfaceCanReach != "":
		chosen, matched, err = byReach(s, o.IfaceCanReach)
	default:
		chosen, err = byDefault(s, publicIP, publicIPv6)
	}
	if err != nil {
		return backend.ExternalInterface{}, err
	}

	var addr netip.Addr
	switch {
	case publicIP.IsValid() && chosen.holds(publicIP):
		addr = publicIP
	case matched.Is4():
		addr = matched
	default:
		for _, a := range chosen.Addrs {
			if a.IsGlobalUnicast() {
				addr = a
				break
			}
		}
	}
	var addr6 netip.Addr
	switch {
	case publicIPv6.IsValid() && chosen.holds(publicIPv6):
		addr6 = publicIPv6
	case matched.Is6():
		addr6 = matched
	case len(chosen.Addrs6) > 0:
		addr6 = chosen.Addrs6[0]
	}
	// An interface with IPv6 only is chosen (an IPv6-only underlay); the
	// agent refuses it once the config says IPv4 is needed.
	if !addr.IsValid() && !addr6.IsValid() {
		return backend.ExternalInterface{}, fmt.Errorf("interface %s has no IPv4 address", chosen.Name)
	}
	if chosen.MTU == 0 {
		return backend.ExternalInterface{}, fmt.Errorf("interface %s has MTU 0", chosen.Name)
	}
	if !publicIP.IsValid() {
		publicIP = addr
	}
	if !publicIPv6.IsValid() {
		publicIPv6 = addr6
	}
	return backend.ExternalInterface{
		Name:       chosen.Name,
		Index:      chosen.Index,
		MTU:        chosen.MTU,
		Addr:       addr,
		PublicIP:   publicIP,
		Addr6:      addr6,
		PublicIPv6: publicIPv6,
	}, nil
}

func byIface(s snapshot, ifaces []string) (ifaceInfo, netip.Addr, error) {
	var errs []error
	for _, v := range ifaces {
		if a, err := netip.ParseAddr(v); err == nil {
			if i, ok := s.holding(a); ok {
				return i, a, nil
			}
			errs = append(errs, fmt.Errorf("--iface %s: no interface has this address", v))
			continue
		}
		if i, ok := s.byName(v); ok {
			return i, netip.Addr{}, nil
		}
		errs = append(errs, fmt.Errorf("--iface %s: no such interface", v))
	}
	return ifaceInfo{}, netip.Addr{}, errors.Join(errs...)
}

// byRegex skips loopback interfaces: a pattern such as ".*" would
// otherwise pick lo, which never reaches another host.
func byRegex(s snapshot, patterns []string) (ifaceInfo, netip.Addr, error) {
	quoted := make([]string, len(patterns))
	for n, p := range patterns {
		quoted[n] = strconv.Quote(p)
		re, err := regexp.Compile(p)
		if err != nil {
			return ifaceInfo{}, netip.Addr{}, fmt.Errorf("--iface-regex %q: %w", p, err)
		}
		for _, i := range s.ifaces {
			if i.Loopback {
				continue
			}
			for _, a := range i.Addrs {
				if re.MatchString(a.String()) {
					return i, a, nil
				}
			}
		}
		for _, i := range s.ifaces {
			if i.Loopback {
				continue
			}
			for _, a := range i.Addrs6 {
				if re.MatchString(a.String()) {
					return i, a, nil
				}
			}
		}
		for _, i := range s.ifaces {
			if !i.Loopback && re.MatchString(i.Name) {
				return i, netip.Addr{}, nil
			}
		}
	}
	return ifaceInfo{}, netip.Addr{}, fmt.Errorf("no interface matches --iface-regex %s", strings.Join(quoted, ", "))
}

func byReach(s snapshot, target string) (ifaceInfo, netip.Addr, error) {
	dst, err := netip.ParseAddr(target)
	if err != nil || dst.Zone() != "" {
		return ifaceInfo{}, netip.Addr{}, fmt.Errorf("--iface-can-reach %q: not an IP address", target)
	}
	dst = dst.Unmap()
	idx, src, err := s.reach(dst)
	if err != nil {
		return ifaceInfo{}, netip.Addr{}, fmt.Errorf("--iface-can-reach %s: no route: %w", dst, err)
	}
	i, ok := s.byIndex(idx)
	if !ok {
		return ifaceInfo{}, netip.Addr{}, fmt.Errorf("--iface-can-reach %s: the route leaves by interface index %d, which does not exist", dst, idx)
	}
	if !i.holds(src) {
		src = netip.Addr{}
	}
	return i, src, nil
}

func byDefault(s snapshot, publicIP, publicIPv6 netip.Addr) (ifaceInfo, error) {
	for _, ip := range []netip.Addr{publicIP, publicIPv6} {
		if !ip.IsValid() {
			continue
		}
		if i, ok := s.holding(ip); ok {
			return i, nil
		}
		// Behind NAT --public-ip is on no interface; the default route
		// still says which one talks to the other hosts.
	}
	if s.defaultIndex == 0 {
		return ifaceInfo{}, errors.New("no default route; pass --iface or --public-ip")
	}
	i, ok := s.byIndex(s.defaultIndex)
	if !ok {
		return ifaceInfo{}, fmt.Errorf("the default route leaves by interface index %d, which does not exist", s.defaultIndex)
	}
	return i, nil
}
