package status

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// quotedEcho is the start of an echo request to dst with identifier id as
// an ICMP error quotes it: the IP header, then the ICMP header.
func quotedEcho(dst netip.Addr, id int) []byte {
	var b []byte
	if dst.Is4() {
		b = make([]byte, 28)
		b[0], b[9] = 0x45, 1 // version 4, IHL 5; protocol ICMP
		copy(b[16:20], dst.AsSlice())
		b[20] = 8 // echo request
		binary.BigEndian.PutUint16(b[24:], uint16(id))
		return b
	}
	b = make([]byte, 48)
	b[0], b[6] = 0x60, 58 // version 6; next header ICMPv6
	copy(b[24:40], dst.AsSlice())
	b[40] = 128 // echo request
	binary.BigEndian.PutUint16(b[44:], uint16(id))
	return b
}

// An ICMP error is ours only when it quotes our echo request to dst with
// our identifier, in the family's layout.
func TestQuotesEcho(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.244.3.1"), netip.MustParseAddr("fd00:10:244:3::1")
	for _, tc := range []struct {
		name string
		f    icmpFamily
		q    []byte
		dst  netip.Addr
		want bool
	}{
		{"IPv4, ours", icmpV4, quotedEcho(v4, 7), v4, true},
		{"IPv4, another id", icmpV4, quotedEcho(v4, 8), v4, false},
		{"IPv4, another destination", icmpV4, quotedEcho(netip.MustParseAddr("10.244.3.2"), 7), v4, false},
		{"IPv4, truncated", icmpV4, quotedEcho(v4, 7)[:24], v4, false},
		{"IPv6, ours", icmpV6, quotedEcho(v6, 7), v6, true},
		{"IPv6, another id", icmpV6, quotedEcho(v6, 8), v6, false},
		{"IPv6, another destination", icmpV6, quotedEcho(netip.MustParseAddr("fd00:10:244:3::2"), 7), v6, false},
		{"IPv6, not ICMPv6", icmpV6, func() []byte { b := quotedEcho(v6, 7); b[6] = 17; return b }(), v6, false},
		{"IPv6, truncated", icmpV6, quotedEcho(v6, 7)[:44], v6, false},
	} {
		if got := tc.f.quotesEcho(tc.q, tc.dst, 7); got != tc.want {
			t.Errorf("%s: quotesEcho = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzQuotesEcho: whatever an ICMP error quotes (it comes off the wire),
// quotesEcho of either family answers without panicking, and says yes
// only to a quote that names dst and the identifier.
func FuzzQuotesEcho(f *testing.F) {
	f.Add(quotedEcho(netip.MustParseAddr("10.244.3.1"), 7), false)
	f.Add(quotedEcho(netip.MustParseAddr("fd00:10:244:3::1"), 7), true)
	f.Add([]byte{0x4f}, false)
	f.Fuzz(func(t *testing.T, q []byte, six bool) {
		fam, dst := icmpV4, netip.MustParseAddr("10.244.3.1")
		if six {
			fam, dst = icmpV6, netip.MustParseAddr("fd00:10:244:3::1")
		}
		if fam.quotesEcho(q, dst, 7) {
			a, ok := netip.AddrFromSlice(q[fam.dstOff : fam.dstOff+dst.BitLen()/8])
			if !ok || a != dst {
				t.Errorf("quote %x accepted for %s", q, dst)
			}
		}
	})
}
