package udp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nstest"
)

// groControl is the control message the kernel writes for a UDP_GRO run
// of segments of size bytes.
func groControl(size int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	putCmsgHeader(b, unix.CmsgLen(4), unix.SOL_UDP, unix.UDP_GRO)
	binary.NativeEndian.PutUint32(b[unix.SizeofCmsghdr:], uint32(size))
	return b
}

func TestGROSize(t *testing.T) {
	other := make([]byte, unix.CmsgSpace(4))
	putCmsgHeader(other, unix.CmsgLen(4), unix.SOL_IP, unix.IP_TOS)
	for _, c := range []struct {
		name    string
		control []byte
		want    int
		bad     bool
	}{
		{"none", nil, 0, false},
		{"gro", groControl(1400), 1400, false},
		{"after another", append(append([]byte(nil), other...), groControl(512)...), 512, false},
		{"another only", other, 0, false},
		{"short header", groControl(1400)[:8], 0, true},
		{"length past the end", groControl(1400)[:unix.CmsgLen(4)-1], 0, true},
		{"zero size", groControl(0), 0, true},
		{"negative size", groControl(-5), 0, true},
	} {
		got, err := groSize(c.control)
		if got != c.want || (err != nil) != c.bad {
			t.Errorf("%s: groSize = %d, %v; want %d, error %v", c.name, got, err, c.want, c.bad)
		}
	}
}

// checkSplit holds splitGRO to its contract for b and size.
func checkSplit(t *testing.T, b []byte, size int, out [][]byte) {
	n, dropped := splitGRO(b, size, out)
	eff := size
	if eff <= 0 || eff >= len(b) {
		eff = len(b)
	}
	want := 0
	if len(b) > 0 {
		want = (len(b) + eff - 1) / eff
	}
	if n+dropped != want || n > len(out) || (dropped > 0 && n != len(out)) {
		t.Fatalf("split of %d bytes by %d: %d datagrams and %d dropped, want %d in all into %d slots", len(b), size, n, dropped, want, len(out))
	}
	var joined []byte
	for i, d := range out[:n] {
		if len(d) == 0 || len(d) > eff || (i < want-1 && len(d) != eff) {
			t.Fatalf("split of %d bytes by %d: datagram %d has %d bytes", len(b), size, i, len(d))
		}
		if cap(d) != len(d) {
			t.Fatalf("datagram %d can grow into the next one (cap %d, len %d)", i, cap(d), len(d))
		}
		joined = append(joined, d...)
	}
	if !bytes.Equal(joined, b[:min(len(b), n*eff)]) {
		t.Fatalf("split of %d bytes by %d does not join back to them", len(b), size)
	}
}

func FuzzSplitGRO(f *testing.F) {
	f.Add(groControl(1400), bytes.Repeat([]byte{7}, 1400*3+20), 8)
	f.Add(groControl(1), []byte("abc"), 2)
	f.Add([]byte{}, []byte("one datagram"), 4)
	f.Add(groControl(100)[:10], []byte("x"), 1)
	f.Fuzz(func(t *testing.T, control, payload []byte, slots int) {
		size, err := groSize(control)
		if err != nil {
			return
		}
		if size < 0 {
			t.Fatalf("groSize returned %d with no error", size)
		}
		checkSplit(t, payload, size, make([][]byte, max(0, slots%128)))
	})
}

// TestGROSplitMatchesKernel sends one batch of datagrams with the sender's
// UDP_SEGMENT runs to two sockets: one with UDP_GRO, read by the receiver
// and split here, and one without, to which the kernel delivers the
// datagrams one by one. Both must read the same datagrams in the same
// order; the GRO socket must have had runs to split (else nothing was
// compared).
func TestGROSplitMatchesKernel(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		tuneSocket(c)
		return c
	}
	src, groSock, plainSock := listen(), listen(), listen()
	so := probeSocket(groSock)
	if !so.gso || !so.gro {
		if nstest.Required() {
			// CI's kernel has both; a skip there would leave the GRO path untested.
			t.Fatalf("kernel without UDP GSO/GRO under CI: %v %v", so.gsoErr, so.groErr)
		}
		t.Skipf("kernel without UDP GSO/GRO: %v %v", so.gsoErr, so.groErr)
	}
	s, err := newSender(src, 128, true)
	if err != nil {
		t.Fatal(err)
	}
	// Runs of equal sizes, a shorter one closing a run, sizes alone, and
	// a run longer than maxGSOSegments.
	var sizes []int
	for range 10 {
		sizes = append(sizes, 1400)
	}
	sizes = append(sizes, 600, 1400, 1400, 1400, 100, 1, 1, 1472, 1472, 900)
	for range 70 {
		sizes = append(sizes, 300)
	}
	var sent [][]byte
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i + j)
		}
		sent = append(sent, p)
	}
	read := func(c *net.UDPConn, gro bool) ([][]byte, int) {
		r, err := newReceiver(c, rxMessages, groBufSize, gro)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		lens := make([]int, len(r.pkts))
		runs := 0
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for len(got) < len(sent) {
			n, bad, err := r.read(lens)
			if err != nil {
				t.Fatalf("read after %d datagrams: %v", len(got), err)
			}
			if bad != 0 {
				t.Fatalf("%d datagrams could not be split", bad)
			}
			runs += r.n
			for _, p := range r.pkts[:n] {
				got = append(got, append([]byte(nil), p...))
			}
		}
		return got, runs
	}
	for _, dst := range []*net.UDPConn{groSock, plainSock} {
		ap := dst.LocalAddr().(*net.UDPAddr).AddrPort()
		tx := newTxBatch(len(sent))
		for i, p := range sent {
			tx.pkts[i] = p
			tx.dsts[i] = endpoint{ip: ap.Addr().As4(), port: ap.Port()}
		}
		tx.n = len(sent)
		if n, failed, err := s.write(tx); n != len(sent) || failed != 0 || err != nil {
			t.Fatalf("write = %d, %d, %v", n, failed, err)
		}
	}
	plain, _ := read(plainSock, false)
	split, runs := read(groSock, true)
	if len(plain) != len(sent) || len(split) != len(sent) {
		t.Fatalf("plain socket read %d, GRO socket %d, of %d sent", len(plain), len(split), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(plain[i], sent[i]) {
			t.Fatalf("datagram %d: the kernel delivered %d bytes that differ from the %d sent", i, len(plain[i]), len(sent[i]))
		}
		if !bytes.Equal(split[i], plain[i]) {
			t.Fatalf("datagram %d: split from a GRO run %d bytes, the kernel delivered %d alone", i, len(split[i]), len(plain[i]))
		}
	}
	if runs >= len(sent) {
		t.Errorf("%d receives for %d datagrams: no run was coalesced, so no split was compared", runs, len(sent))
	}
	t.Logf("%d datagrams in %d GRO receives", len(sent), runs)
}

// TestSenderGroupsRuns checks the messages build lays out: a run ends at
// another peer, a longer datagram, after a shorter one, at
// maxGSOSegments and at maxGSOBytes.
func TestSenderGroupsRuns(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := endpoint{ip: netip.MustParseAddr("10.0.0.1").As4(), port: 8285}
	b := endpoint{ip: netip.MustParseAddr("10.0.0.2").As4(), port: 8285}
	type d struct {
		size int
		to   endpoint
	}
	var many []d
	for range maxGSOSegments + 3 {
		many = append(many, d{100, a})
	}
	var big []d
	for range 50 {
		big = append(big, d{1472, a})
	}
	for _, c2 := range []struct {
		name string
		in   []d
		want string
	}{
		{"one run", []d{{1400, a}, {1400, a}, {700, a}}, "[3]"},
		{"peer change", []d{{1400, a}, {1400, b}, {1400, b}}, "[1 2]"},
		{"longer ends a run", []d{{600, a}, {1400, a}, {1400, a}}, "[1 2]"},
		{"shorter closes a run", []d{{1400, a}, {600, a}, {600, a}}, "[2 1]"},
		{"segment limit", many, fmt.Sprint([]int{maxGSOSegments, 3})},
		{"byte limit", big, fmt.Sprint([]int{maxGSOBytes / 1472, 50 - maxGSOBytes/1472})},
	} {
		s, err := newSender(c, 128, true)
		if err != nil {
			t.Fatal(err)
		}
		tx := newTxBatch(128)
		for i, x := range c2.in {
			tx.pkts[i], tx.dsts[i] = make([]byte, x.size), x.to
		}
		tx.n = len(c2.in)
		s.build(tx, 0)
		if got := fmt.Sprint(s.count[:s.nmsg]); got != c2.want {
			t.Errorf("%s: messages of %s datagrams, want %s", c2.name, got, c2.want)
		}
		s.gso = false
		s.build(tx, 0)
		if s.nmsg != len(c2.in) {
			t.Errorf("%s without GSO: %d messages for %d datagrams", c2.name, s.nmsg, len(c2.in))
		}
	}
}
