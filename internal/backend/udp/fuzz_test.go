package udp

import (
	"bytes"
	"testing"
)

// FuzzDecap: any two datagrams a peer (or anyone who can reach the udp
// port) sends, in one batch, against any MTU: decap never panics, accounts
// for every datagram exactly once, and hands flannel0 only well-formed
// IPv4 packets no longer than the MTU, each unchanged but for a TTL one
// lower and a header checksum that is still right if it was right.
func FuzzDecap(f *testing.F) {
	ping := []byte{
		0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00,
		10, 244, 1, 2, 10, 244, 2, 3,
		8, 0, 0xf7, 0xff, 0, 0, 0, 0,
	}
	fixChecksum(ping)
	ttl1 := bytes.Clone(ping)
	ttl1[8] = 1
	fixChecksum(ttl1)
	f.Add(ping, ttl1, uint16(1472))
	f.Add(ping, []byte{0x46, 0, 0, 20}, uint16(1472))
	f.Add(ping, ping, uint16(27))
	f.Add([]byte{0x4f}, []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, a, b []byte, mtu16 uint16) {
		mtu := int(mtu16)
		orig := [][]byte{bytes.Clone(a), bytes.Clone(b)}
		bufs := [][]byte{bytes.Clone(a), bytes.Clone(b)}
		sizes := []int{len(a), len(b)}
		out := make([][]byte, 2)
		var st Stats
		k := decap(bufs, sizes, 2, mtu, out, &st)
		if st.Received != 2 || uint64(k)+st.Oversized+st.Malformed+st.TTLExpired != 2 {
			t.Fatalf("2 datagrams, %d delivered, stats %+v: not each counted once", k, st)
		}
		j := 0
		for i, p := range orig {
			want := len(p) <= mtu && ipv4HeaderLen(p) > 0 && p[8] > 1
			if !want {
				continue
			}
			if j >= k {
				t.Fatalf("datagram %d (%x) should reach flannel0, only %d did", i, p, k)
			}
			got := out[j]
			j++
			if len(got) != len(p) || len(got) > mtu || ipv4HeaderLen(got) == 0 {
				t.Fatalf("delivered %x for %x (mtu %d)", got, p, mtu)
			}
			if got[8] != p[8]-1 {
				t.Fatalf("TTL %d -> %d, want one less", p[8], got[8])
			}
			if !bytes.Equal(got[:8], p[:8]) || got[9] != p[9] || !bytes.Equal(got[12:], p[12:]) {
				t.Fatalf("decap changed more than TTL and checksum: %x -> %x", p, got)
			}
			ihl := ipv4HeaderLen(p)
			if checksum(p[:ihl]) == 0 && checksum(got[:ihl]) != 0 {
				t.Fatalf("header checksum was right in %x and is wrong in %x", p[:ihl], got[:ihl])
			}
		}
		if j != k {
			t.Fatalf("%d packets reached flannel0, want %d", k, j)
		}
	})
}

// fixChecksum sets the IPv4 header checksum of p.
func fixChecksum(p []byte) {
	ihl := int(p[0]&0x0f) * 4
	p[10], p[11] = 0, 0
	c := checksum(p[:ihl])
	p[10], p[11] = byte(c>>8), byte(c)
}
