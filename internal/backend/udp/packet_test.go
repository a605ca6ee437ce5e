package udp

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// offender is a TCP SYN 10.244.1.1:40000 → 10.244.9.5:80, TTL 63, DF, with
// a valid header checksum.
const offender = "45000028123440003f0609af0af401010af40905" + "9c40005001020304000000005002faf000000000"

func TestChecksumOfValidHeaderIsZero(t *testing.T) {
	p := mustHex(t, offender)
	if c := checksum(p[:20]); c != 0 {
		t.Errorf("checksum over a header with a valid checksum = %#04x, want 0", c)
	}
	p[10], p[11] = 0, 0
	if c := checksum(p[:20]); c != 0x09af {
		t.Errorf("checksum = %#04x, want 0x09af", c)
	}
	if c := checksum([]byte{0x01}); c != ^uint16(0x0100) {
		t.Errorf("odd length: %#04x", c)
	}
}

func TestDecTTLPatchesChecksumLikeRecomputing(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hdr := make([]byte, 20)
	for i := range 200000 {
		for j := range hdr {
			hdr[j] = byte(rng.Uint32())
		}
		hdr[0] = 0x45
		// Cover every TTL and the checksum values that stress end-around
		// carry (0x0000, 0xffff, around 0xfeff).
		hdr[8] = byte(i)
		hdr[10], hdr[11] = 0, 0
		binary.BigEndian.PutUint16(hdr[10:], checksum(hdr))
		ttl := hdr[8]
		ok := decTTL(hdr)
		if ttl <= 1 {
			if ok || hdr[8] != ttl {
				t.Fatalf("TTL %d: decTTL = %v, TTL now %d; want false and unchanged", ttl, ok, hdr[8])
			}
			continue
		}
		if !ok || hdr[8] != ttl-1 {
			t.Fatalf("TTL %d: decTTL = %v, TTL now %d", ttl, ok, hdr[8])
		}
		// A header with a correct checksum sums to zero (or to 0xffff's
		// complement form, which RFC 1624 eqn. 3 never produces here).
		if c := checksum(hdr); c != 0 {
			t.Fatalf("after decrementing TTL %d: header %x does not check (%#04x)", ttl, hdr, c)
		}
	}
}

func TestIPv4HeaderLen(t *testing.T) {
	valid := mustHex(t, offender)
	for _, c := range []struct {
		name string
		p    []byte
		want int
	}{
		{"tcp syn", valid, 20},
		{"short", valid[:19], 0},
		{"ipv6", append([]byte{0x60}, valid[1:]...), 0},
		{"ihl 4", append([]byte{0x44}, valid[1:]...), 0},
		{"ihl past end", append([]byte{0x4f}, valid[1:40]...), 0},
		{"options", append([]byte{0x46}, valid[1:]...), 24},
	} {
		if got := ipv4HeaderLen(c.p); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestNetUnreachableByteExact(t *testing.T) {
	out := make([]byte, maxUnreachable)
	n := netUnreachable(out, mustHex(t, offender))
	want := "450000380000000040015ad80af409050af40101" + // IPv4: 56 bytes, TTL 64, ICMP, 10.244.9.5 → 10.244.1.1
		"03005c6900000000" + // type 3 code 0 (net unreachable), checksum, unused
		"45000028123440003f0609af0af401010af40905" + "9c40005001020304" // offender's header and 8 bytes
	if got := hex.EncodeToString(out[:n]); got != want {
		t.Errorf("ICMP:\n got %s\nwant %s", got, want)
	}
	if checksum(out[:20]) != 0 || checksum(out[20:n]) != 0 {
		t.Errorf("checksums do not verify")
	}
}

func TestNetUnreachableQuotesShortPacketAndOptions(t *testing.T) {
	out := make([]byte, maxUnreachable)
	// A 24-byte header with options and only 3 payload bytes.
	p := mustHex(t, "4600001f000000004011000001020304050607080101010100000000aabbcc")
	p[9] = 17
	n := netUnreachable(out, p)
	if n != 20+8+len(p) {
		t.Fatalf("length %d, want %d", n, 20+8+len(p))
	}
	if hex.EncodeToString(out[28:n]) != hex.EncodeToString(p) {
		t.Errorf("quote %x, want all of %x", out[28:n], p)
	}
	if checksum(out[:20]) != 0 || checksum(out[20:n]) != 0 {
		t.Errorf("checksums do not verify")
	}
	if binary.BigEndian.Uint16(out[2:4]) != uint16(n) {
		t.Errorf("total length field %d, want %d", binary.BigEndian.Uint16(out[2:4]), n)
	}
}

func TestNetUnreachableSuppressed(t *testing.T) {
	base := mustHex(t, offender)
	mod := func(f func(p []byte)) []byte {
		p := append([]byte(nil), base...)
		f(p)
		return p
	}
	icmp := func(typ byte) []byte {
		return mod(func(p []byte) { p[9] = 1; p[20] = typ })
	}
	out := make([]byte, maxUnreachable)
	for name, p := range map[string][]byte{
		"icmp dest unreachable": icmp(3),
		"icmp time exceeded":    icmp(11),
		"icmp redirect":         icmp(5),
		"icmp param problem":    icmp(12),
		"icmp source quench":    icmp(4),
		"icmp without type":     mod(func(p []byte) { p[9] = 1 })[:20],
		"second fragment":       mod(func(p []byte) { p[6], p[7] = 0x20, 0x10 }),
		"source 0.0.0.0":        mod(func(p []byte) { copy(p[12:16], []byte{0, 0, 0, 0}) }),
		"source loopback":       mod(func(p []byte) { copy(p[12:16], []byte{127, 0, 0, 1}) }),
		"source multicast":      mod(func(p []byte) { copy(p[12:16], []byte{224, 0, 0, 1}) }),
		"dest broadcast":        mod(func(p []byte) { copy(p[16:20], []byte{255, 255, 255, 255}) }),
		"not ipv4":              mod(func(p []byte) { p[0] = 0x60 }),
	} {
		if n := netUnreachable(out, p); n != 0 {
			t.Errorf("%s: ICMP error of %d bytes, want none", name, n)
		}
	}
	// ICMP that is not an error (echo request) and first fragments do
	// get an answer: ping shows "Destination Net Unreachable".
	for name, p := range map[string][]byte{
		"echo request":   icmp(8),
		"first fragment": mod(func(p []byte) { p[6] = 0x20 }), // MF set, offset 0
	} {
		if n := netUnreachable(out, p); n == 0 {
			t.Errorf("%s: no ICMP error", name)
		}
	}
	if n := netUnreachable(make([]byte, 10), base); n != 0 {
		t.Errorf("short output buffer: %d", n)
	}
}

func TestICMPLimiter(t *testing.T) {
	l := newICMPLimiter(10, 3)
	t0 := time.Unix(1000, 0)
	got := 0
	for range 10 {
		if l.allow(t0) {
			got++
		}
	}
	if got != 3 {
		t.Errorf("burst allowed %d, want 3", got)
	}
	if !l.allow(t0.Add(100 * time.Millisecond)) {
		t.Error("one token after 100ms at 10/s not granted")
	}
	if l.allow(t0.Add(100 * time.Millisecond)) {
		t.Error("second token granted without time passing")
	}
	if n := func() int {
		c := 0
		for range 10 {
			if l.allow(t0.Add(time.Hour)) {
				c++
			}
		}
		return c
	}(); n != 3 {
		t.Errorf("after an hour %d tokens, want the burst of 3", n)
	}
}

// testBatch fills bufs with copies of pkts.
func testBatch(pkts ...[]byte) ([][]byte, []int) {
	bufs := makeTestBufs(len(pkts), 2048)
	sizes := make([]int, len(pkts))
	for i, p := range pkts {
		sizes[i] = copy(bufs[i], p)
	}
	return bufs, sizes
}

func makeTestBufs(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

func pktTo(t testing.TB, dst string, ttl byte) []byte {
	p := mustHex(t, offender)
	a := netip.MustParseAddr(dst).As4()
	copy(p[16:20], a[:])
	p[8] = ttl
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	return p
}

func testTable() *peerTable {
	return newPeerTable([]peer{
		{subnet: netip.MustParsePrefix("10.244.2.0/24"), ep: endpoint{ip: [4]byte{192, 168, 1, 2}, port: 8285}},
		{subnet: netip.MustParsePrefix("10.244.3.0/24"), ep: endpoint{ip: [4]byte{192, 168, 1, 3}, port: 8285}},
	})
}

func TestEncapSortsBatch(t *testing.T) {
	big := append(pktTo(t, "10.244.2.9", 64), make([]byte, 1500)...)
	bufs, sizes := testBatch(
		pktTo(t, "10.244.2.7", 64),  // to B
		pktTo(t, "10.244.9.5", 64),  // no lease: ICMP
		pktTo(t, "10.244.3.1", 1),   // TTL expires
		[]byte{0x60, 0, 0, 0},       // not IPv4
		big,                         // longer than the MTU
		pktTo(t, "10.244.3.200", 2), // to C with TTL 1
	)
	tx, ic := newTxBatch(len(bufs)), newICMPBatch(len(bufs))
	var st Stats
	encap(testTable(), bufs, sizes, len(bufs), 0, 1472, tx, ic, &st)

	if tx.n != 2 {
		t.Fatalf("%d datagrams, want 2", tx.n)
	}
	for i, want := range []struct {
		ip  [4]byte
		ttl byte
	}{{[4]byte{192, 168, 1, 2}, 63}, {[4]byte{192, 168, 1, 3}, 1}} {
		if tx.dsts[i] != (endpoint{ip: want.ip, port: 8285}) {
			t.Errorf("datagram %d to %v", i, tx.dsts[i])
		}
		if p := tx.pkts[i]; p[8] != want.ttl || checksum(p[:20]) != 0 {
			t.Errorf("datagram %d: TTL %d (want %d), checksum ok %v", i, p[8], want.ttl, checksum(p[:20]) == 0)
		}
	}
	if &tx.pkts[0][0] != &bufs[0][0] {
		t.Error("datagram 0 is a copy; encap must send the read buffer in place")
	}
	if ic.n != 1 || ic.out[0][9] != 1 || ic.out[0][20] != 3 || ic.out[0][21] != 0 {
		t.Errorf("ICMP: %d errors, first %x", ic.n, ic.out[:ic.n])
	}
	want := Stats{TunPackets: 6, NoLease: 1, TTLExpired: 1, Malformed: 1, Oversized: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

func TestEncapWithoutPeersAnswersEverything(t *testing.T) {
	bufs, sizes := testBatch(pktTo(t, "10.244.2.7", 64))
	tx, ic := newTxBatch(1), newICMPBatch(1)
	var st Stats
	encap(nil, bufs, sizes, 1, 0, 1472, tx, ic, &st)
	if tx.n != 0 || ic.n != 1 || st.NoLease != 1 {
		t.Errorf("nil table: %d sent, %d ICMP, %+v", tx.n, ic.n, st)
	}
}

func TestDecap(t *testing.T) {
	bufs, sizes := testBatch(
		pktTo(t, "10.244.1.7", 64),
		pktTo(t, "10.244.1.8", 1),
		[]byte{0x45, 0, 0},
		append(pktTo(t, "10.244.1.9", 64), make([]byte, 1453)...), // 1473 bytes
	)
	out := make([][]byte, len(bufs))
	var st Stats
	k := decap(bufs, sizes, len(bufs), 1472, out, &st)
	if k != 1 || out[0][8] != 63 || checksum(out[0][:20]) != 0 || &out[0][0] != &bufs[0][0] {
		t.Errorf("decap kept %d packets, first TTL %d", k, out[0][8])
	}
	want := Stats{Received: 4, TTLExpired: 1, Malformed: 1, Oversized: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// TestHotPathAllocatesNothing holds the per-batch work of both directions,
// counters included, to zero allocations.
func TestHotPathAllocatesNothing(t *testing.T) {
	tbl := testTable()
	pkts := make([][]byte, 64)
	for i := range pkts {
		switch i % 4 {
		case 3:
			pkts[i] = pktTo(t, "10.244.9.5", 64)
		default:
			pkts[i] = pktTo(t, "10.244.2.7", 64)
		}
	}
	bufs, sizes := testBatch(pkts...)
	tx, ic := newTxBatch(64), newICMPBatch(64)
	out := make([][]byte, 64)
	var st Stats
	var shared atomicStats
	reset := func() {
		for i := range bufs {
			bufs[i][8] = 64 // TTL back up, checksum stays valid enough for the loop
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		reset()
		encap(tbl, bufs, sizes, len(bufs), 0, 1472, tx, ic, &st)
		shared.add(&st)
	}); a != 0 {
		t.Errorf("encap: %v allocations per batch", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		reset()
		decap(bufs, sizes, len(bufs), 1472, out, &st)
		shared.add(&st)
	}); a != 0 {
		t.Errorf("decap: %v allocations per batch", a)
	}
}

func BenchmarkEncap(b *testing.B) {
	tbl := testTable()
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = append(pktTo(b, "10.244.2.7", 64), make([]byte, 1400)...)
	}
	bufs, sizes := testBatch(pkts...)
	tx, ic := newTxBatch(64), newICMPBatch(64)
	var st Stats
	b.ReportAllocs()
	b.SetBytes(int64(64 * len(pkts[0])))
	for b.Loop() {
		for i := range bufs {
			bufs[i][8] = 64
		}
		encap(tbl, bufs, sizes, len(bufs), 0, 1472, tx, ic, &st)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/packet")
}

func BenchmarkDecap(b *testing.B) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = append(pktTo(b, "10.244.1.7", 64), make([]byte, 1400)...)
	}
	bufs, sizes := testBatch(pkts...)
	out := make([][]byte, 64)
	var st Stats
	b.ReportAllocs()
	b.SetBytes(int64(64 * len(pkts[0])))
	for b.Loop() {
		for i := range bufs {
			bufs[i][8] = 64
		}
		decap(bufs, sizes, len(bufs), 1472, out, &st)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/packet")
}
