package rules

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nstest"
)

// nlMsg builds one netlink message as the kernel sends it.
func nlMsg(typ, flags uint16, seq uint32, body []byte) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.SizeofNlMsghdr, nlAlign(unix.SizeofNlMsghdr+len(body)))
	ne.PutUint32(b[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	b = append(b, body...)
	return append(b, make([]byte, nlAlign(len(b))-len(b))...)
}

func nlAttr(typ uint16, v []byte) []byte {
	b := make([]byte, unix.SizeofNlAttr)
	binary.NativeEndian.PutUint16(b[0:], uint16(unix.SizeofNlAttr+len(v)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, v...)
	return append(b, make([]byte, nlAlign(len(b))-len(b))...)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// chainMsg is an NFT_MSG_NEWCHAIN message; hook < 0 makes a regular chain.
func chainMsg(seq uint32, flags uint16, family uint8, table, name, typ string, hook int) []byte {
	body := []byte{family, unix.NFNETLINK_V0, 0, 0}
	body = append(body, nlAttr(unix.NFTA_CHAIN_TABLE, cstr(table))...)
	body = append(body, nlAttr(unix.NFTA_CHAIN_NAME, cstr(name))...)
	body = append(body, nlAttr(unix.NFTA_CHAIN_HANDLE|0x4000, make([]byte, 8))...)
	if hook >= 0 {
		num := binary.BigEndian.AppendUint32(nil, uint32(hook))
		prio := binary.BigEndian.AppendUint32(nil, 100)
		nested := append(nlAttr(unix.NFTA_HOOK_HOOKNUM, num), nlAttr(unix.NFTA_HOOK_PRIORITY, prio)...)
		body = append(body, nlAttr(unix.NFTA_CHAIN_HOOK|0x8000, nested)...)
		body = append(body, nlAttr(unix.NFTA_CHAIN_TYPE, cstr(typ))...)
	}
	return nlMsg(nftablesType(unix.NFT_MSG_NEWCHAIN), flags|unix.NLM_F_MULTI, seq, body)
}

func errMsg(seq uint32, errno unix.Errno) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	return nlMsg(unix.NLMSG_ERROR, 0, seq, append(b, make([]byte, unix.SizeofNlMsghdr)...))
}

func TestParseChainDump(t *testing.T) {
	done := nlMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, 7, []byte{0, 0, 0, 0})
	nat := chainMsg(7, 0, nfprotoIPv4, "nat", "POSTROUTING", "nat", 4)
	regular := chainMsg(7, 0, nfprotoIPv4, "nat", "DOCKER", "", -1)
	natChain := nftChain{family: nfprotoIPv4, table: "nat", name: "POSTROUTING", typ: "nat", hook: 4}
	regChain := nftChain{family: nfprotoIPv4, table: "nat", name: "DOCKER", hook: -1}
	cases := []struct {
		name       string
		data       []byte
		chains     []nftChain
		done, intr bool
		err        error
	}{
		{"empty ruleset", done, nil, true, false, nil},
		{"two chains, more to come", slices.Concat(nat, regular), []nftChain{natChain, regChain}, false, false, nil},
		{"chain then done", slices.Concat(regular, done), []nftChain{regChain}, true, false, nil},
		{"other sequence numbers ignored", slices.Concat(chainMsg(6, 0, nfprotoIPv6, "x", "y", "nat", 4), nat, done), []nftChain{natChain}, true, false, nil},
		{"interrupted by a change", slices.Concat(chainMsg(7, unix.NLM_F_DUMP_INTR, nfprotoIPv4, "nat", "POSTROUTING", "nat", 4), done), []nftChain{natChain}, true, true, nil},
		{"kernel error", errMsg(7, unix.EOPNOTSUPP), nil, false, false, unix.EOPNOTSUPP},
		{"ack ends it", errMsg(7, 0), nil, true, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chains, done, intr, err := parseChainDump(tc.data, 7)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !slices.Equal(chains, tc.chains) || done != tc.done || intr != tc.intr {
				t.Errorf("got %+v done=%v intr=%v, want %+v done=%v intr=%v", chains, done, intr, tc.chains, tc.done, tc.intr)
			}
		})
	}
	for _, bad := range [][]byte{
		nat[:len(nat)-8], // message length beyond the data
		func() []byte {
			b := slices.Clone(nat)
			binary.NativeEndian.PutUint16(b[unix.SizeofNlMsghdr+4:], 200)
			return b
		}(), // attribute too long
	} {
		if _, _, _, err := parseChainDump(bad, 7); err == nil {
			t.Errorf("malformed dump %x accepted", bad)
		}
	}
}

func TestChainDumpRequest(t *testing.T) {
	b := chainDumpRequest(3)
	ne := binary.NativeEndian
	if int(ne.Uint32(b)) != len(b) || ne.Uint16(b[4:]) != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETCHAIN ||
		ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || ne.Uint32(b[8:]) != 3 || b[16] != unix.AF_UNSPEC {
		t.Errorf("request %x", b)
	}
}

// TestScanAndWatchInNamespace runs the netlink look and the notification
// subscription against a real namespace: each kind of NAT is found in
// the right family, weft's keepsrc counts as installed rather than
// foreign, looking changes nothing, and every nft change notifies.
func TestScanAndWatchInNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "nft", "iptables-nft", "ip6tables-legacy")
	ns := nstest.NewNS(t, "ns")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := watchNFT(ctx, ns, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	expectEvent := func(what string) {
		t.Helper()
		select {
		case <-events:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: no nftables notification", what)
		}
	}
	scan := func() natFound {
		t.Helper()
		f, err := scanNAT(ns)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	if f := scan(); f.keepSource != [2]bool{} || len(f.foreign[0])+len(f.foreign[1]) != 0 {
		t.Errorf("fresh namespace: %+v", f)
	}
	if out := nstest.Exec(t, ns, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("looking created something:\n%s", out)
	}

	nstest.Exec(t, ns, "nft", "add table ip flannel-ipv4; add chain ip flannel-ipv4 keepsrc { type nat hook postrouting priority srcnat - 1; }")
	expectEvent("weft's table")
	if f := scan(); f.keepSource != [2]bool{true, false} || len(f.foreign[0])+len(f.foreign[1]) != 0 {
		t.Errorf("weft's keepsrc: %+v", f)
	}

	nstest.Exec(t, ns, "iptables-nft", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-j", "MASQUERADE")
	expectEvent("iptables-nft")
	nstest.Exec(t, ns, "nft", "add table inet kp; add chain inet kp pre { type nat hook prerouting priority dstnat; }")
	expectEvent("inet table")
	nstest.Exec(t, ns, "ip6tables-legacy", "-w", "-t", "nat", "-L")
	f := scan()
	want := [2][]string{
		{"iptables-nft nat table (nft table ip nat)", "nft table inet kp chain pre (type nat hook prerouting)"},
		{"nft table inet kp chain pre (type nat hook prerouting)", "ip6tables-legacy nat table"},
	}
	for i := range want {
		if !slices.Equal(f.foreign[i], want[i]) {
			t.Errorf("foreign[%d] = %q, want %q", i, f.foreign[i], want[i])
		}
	}

	cancel()
	for range events {
	}
}
