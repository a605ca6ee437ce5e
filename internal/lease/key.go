package lease

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
)

// KeyName renders a lease key's last element in flannel's form:
// "10.5.1.0-24", or "10.5.1.0-24&fc00::-64" when v6 is valid. Addresses are
// formatted as Go's net.IP.String does (compressed IPv6, lower case).
func KeyName(v4, v6 netip.Prefix) string {
	s := addrString(v4.Addr()) + "-" + strconv.Itoa(v4.Bits())
	if v6.IsValid() {
		s += "&" + addrString(v6.Addr()) + "-" + strconv.Itoa(v6.Bits())
	}
	return s
}

// keyRE is flannel's key grammar, anchored at both ends (flannel's own
// expression is not anchored at the start, which weft deliberately does not
// copy: a key with a junk prefix is not a lease).
var keyRE = regexp.MustCompile(`^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$`)

// ParseKeyName is the inverse of KeyName. It accepts exactly the strings
// KeyName produces: the address must be the prefix's network address and
// written canonically, so "10.5.1.7-24", "10.5.01.0-24" or an upper-case
// IPv6 part are errors, not leases.
func ParseKeyName(name string) (v4, v6 netip.Prefix, err error) {
	m := keyRE.FindStringSubmatch(name)
	if m == nil {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("parse lease key %q: not of the form a.b.c.d-len or a.b.c.d-len&ipv6-len", name)
	}
	v4, err = parseKeyPrefix(name, m[1], m[2], 32)
	if err != nil {
		return netip.Prefix{}, netip.Prefix{}, err
	}
	if m[3] != "" {
		v6, err = parseKeyPrefix(name, m[3], m[4], 128)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
		if !v6.Addr().Is6() || v6.Addr().Is4In6() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("parse lease key %q: %s is not an IPv6 subnet", name, v6)
		}
	}
	if KeyName(v4, v6) != name {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("parse lease key %q: not in canonical form (want %q)", name, KeyName(v4, v6))
	}
	return v4, v6, nil
}

func parseKeyPrefix(name, addr, bits string, maxBits int) (netip.Prefix, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse lease key %q: address %q: %w", name, addr, err)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > maxBits || len(bits) > 3 {
		return netip.Prefix{}, fmt.Errorf("parse lease key %q: prefix length %q is out of range 0..%d", name, bits, maxBits)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("parse lease key %q: %s has host bits set (subnet would be %s)", name, p, p.Masked())
	}
	return p, nil
}
