package netconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// wireConfig is the JSON shape. Addresses are strings so that errors can
// quote what the user wrote.
type wireConfig struct {
	EnableIPv4     bool
	EnableIPv6     bool
	EnableNFTables bool
	Network        string
	SubnetLen      int
	SubnetMin      string
	SubnetMax      string
	IPv6Network    string
	IPv6SubnetLen  int
	IPv6SubnetMin  string
	IPv6SubnetMax  string
	Backend        json.RawMessage
}

// Parse decodes a config (encoding/json semantics), fills flannel's defaults
// and validates it. Errors name the field and the value at fault.
//
// Defaults, as flannel's:
//   - EnableIPv4 true.
//   - SubnetLen 24 if Network is /22 or larger, else Network's length + 2
//     (a Network smaller than /28 without SubnetLen is an error).
//     IPv6SubnetLen likewise: 64 if IPv6Network is /62 or larger, else +2,
//     and IPv6Network must be at least a /124.
//   - SubnetMin the second subnet of Network (the first is skipped because
//     its network address would be on a host's bridge), SubnetMax the last.
//   - Backend {"Type":"udp"} when the Backend object is absent or null.
//     That is flannel's code, although its documentation says vxlan; weft
//     keeps it so that a config means the same thing to both.
//
// The Backend object must have a string Type, which is lower-cased; which
// types exist and what options they take is not checked here but by the
// backend table (backends.CheckOptions), which netconf cannot import: the
// backends import netconf. Every reader that acts on the backend (agent,
// weft config, weft status) applies that check after Parse.
//
// Network may carry host bits ("10.1.2.3/16"); they are masked, as flannel
// does.
func Parse(data []byte) (*Config, error) {
	w := wireConfig{EnableIPv4: true}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	c := &Config{
		EnableIPv4:     w.EnableIPv4,
		EnableIPv6:     w.EnableIPv6,
		EnableNFTables: w.EnableNFTables,
		SubnetLen:      w.SubnetLen,
		IPv6SubnetLen:  w.IPv6SubnetLen,
	}
	if err := c.parseBackend(w.Backend); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	if !c.EnableIPv4 && !c.EnableIPv6 {
		return nil, errors.New("parse network config: EnableIPv4 and EnableIPv6 are both false; enable at least one")
	}
	v4 := family{name: "", bits: 32, maxSubnetLen: 30, minNetLen: 28, defaultLen: 24}
	if err := v4.fill(c.EnableIPv4, w.Network, w.SubnetMin, w.SubnetMax, &c.Network, &c.SubnetLen, &c.SubnetMin, &c.SubnetMax); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	v6 := family{name: "IPv6", bits: 128, maxSubnetLen: 126, minNetLen: 124, defaultLen: 64}
	if err := v6.fill(c.EnableIPv6, w.IPv6Network, w.IPv6SubnetMin, w.IPv6SubnetMax, &c.IPv6Network, &c.IPv6SubnetLen, &c.IPv6SubnetMin, &c.IPv6SubnetMax); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	return c, nil
}

func (c *Config) parseBackend(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		c.BackendType = "udp"
		c.Backend = json.RawMessage(`{"Type":"udp"}`)
		return nil
	}
	var b struct{ Type string }
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("Backend %s: must be an object with a string Type: %w", truncate(raw), err)
	}
	if b.Type == "" {
		return fmt.Errorf(`Backend.Type is missing in Backend %s: name the backend, e.g. {"Type": "vxlan"}`, truncate(raw))
	}
	c.BackendType = strings.ToLower(b.Type)
	c.Backend = append(json.RawMessage(nil), raw...)
	return nil
}

// family holds the per-address-family rules; name prefixes field names in
// errors ("" or "IPv6").
type family struct {
	name         string
	bits         int // address length
	maxSubnetLen int // longest SubnetLen allowed
	minNetLen    int // longest Network allowed when SubnetLen is defaulted
	defaultLen   int // SubnetLen for big networks
}

func (f family) fill(enabled bool, network, min, max string, netp *netip.Prefix, subnetLen *int, minp, maxp *netip.Addr) error {
	netField := f.name + "Network"
	lenField := f.name + "SubnetLen"
	if network != "" {
		p, err := netip.ParsePrefix(network)
		if err != nil {
			return fmt.Errorf("%s %q is not a CIDR: %w", netField, network, err)
		}
		if p.Addr().BitLen() != f.bits || p.Addr().Is4In6() {
			return fmt.Errorf("%s %q is not an IPv%d network", netField, network, map[int]int{32: 4, 128: 6}[f.bits])
		}
		*netp = p.Masked()
	}
	var err error
	if *minp, err = f.parseAddr(f.name+"SubnetMin", min); err != nil {
		return err
	}
	if *maxp, err = f.parseAddr(f.name+"SubnetMax", max); err != nil {
		return err
	}
	if !enabled {
		return nil
	}
	n := *netp
	if !n.IsValid() {
		return fmt.Errorf("%s is missing; it is mandatory when IPv%d is enabled", netField, map[int]int{32: 4, 128: 6}[f.bits])
	}
	switch l := *subnetLen; {
	case l < 0:
		return fmt.Errorf("%s %d is negative", lenField, l)
	case l > 0 && l > f.maxSubnetLen:
		return fmt.Errorf("%s %d is too long: it must be at most %d", lenField, l, f.maxSubnetLen)
	case l > 0 && l < n.Bits()+2:
		return fmt.Errorf("%s %d is too short for %s %s: it must be at least %d so that the network holds four subnets", lenField, l, netField, n, n.Bits()+2)
	case l == 0 && n.Bits() > f.minNetLen:
		return fmt.Errorf("%s %s is too small. Minimum useful network prefix is /%d", netField, n, f.minNetLen)
	case l == 0 && n.Bits() <= f.defaultLen-2:
		*subnetLen = f.defaultLen
	case l == 0:
		*subnetLen = n.Bits() + 2
	}
	sl := *subnetLen
	if !minp.IsValid() {
		*minp = setBit(n.Addr(), sl-1)
	}
	if !maxp.IsValid() {
		*maxp = netip.PrefixFrom(lastAddr(n), sl).Masked().Addr()
	}
	for _, a := range []struct {
		field string
		addr  netip.Addr
	}{{f.name + "SubnetMin", *minp}, {f.name + "SubnetMax", *maxp}} {
		if !n.Contains(a.addr) {
			return fmt.Errorf("%s %s is not inside %s %s", a.field, a.addr, netField, n)
		}
		if netip.PrefixFrom(a.addr, sl).Masked().Addr() != a.addr {
			return fmt.Errorf("%s %s is not on a /%d boundary (%s %d)", a.field, a.addr, sl, lenField, sl)
		}
	}
	if maxp.Less(*minp) {
		return fmt.Errorf("%sSubnetMin %s is above %sSubnetMax %s", f.name, *minp, f.name, *maxp)
	}
	return nil
}

// parseAddr parses an optional address. The unspecified address counts as
// absent, as in flannel, where the zero value means "use the default".
func (f family) parseAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IP address: %w", field, s, err)
	}
	if a.BitLen() != f.bits || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv%d address", field, s, map[int]int{32: 4, 128: 6}[f.bits])
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	return a, nil
}

// Subnets is the number of subnets of SubnetLen between SubnetMin and
// SubnetMax, the size of the pool hosts lease from (0 unless IPv4 is
// enabled and the config is valid).
func (c *Config) Subnets() int {
	if !c.EnableIPv4 || !c.SubnetMin.Is4() || !c.SubnetMax.Is4() || c.SubnetLen <= 0 || c.SubnetLen > 32 || c.SubnetMax.Less(c.SubnetMin) {
		return 0
	}
	lo, hi := c.SubnetMin.As4(), c.SubnetMax.As4()
	d := be32(hi) - be32(lo)
	return int(d>>(32-c.SubnetLen)) + 1
}

func be32(b [4]byte) uint64 {
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// setBit returns a with bit i (0 = most significant) set.
func setBit(a netip.Addr, i int) netip.Addr {
	b := a.As16()
	off := 0
	if a.Is4() {
		off = 96
	}
	j := off + i
	b[j/8] |= 0x80 >> (j % 8)
	if a.Is4() {
		return netip.AddrFrom16(b).Unmap()
	}
	return netip.AddrFrom16(b)
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	for i := p.Bits(); i < a.BitLen(); i++ {
		a = setBit(a, i)
	}
	return a
}

func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
