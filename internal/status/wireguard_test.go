package status

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lease"
)

func wgKey(t *testing.T, b byte) wireguard.Key {
	t.Helper()
	var k wireguard.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func wgStatusLease(subnet, pub string, key wireguard.Key) lease.Lease {
	return lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(pub), BackendType: "wireguard",
		BackendData: json.RawMessage(`{"PublicKey":"` + key.String() + `","Port":51820}`)}}
}

// --check explains a silent wireguard peer with what the device knows: no
// handshake (a blocked port or a wrong key; nothing listening when the
// port probe said so), a key the device does not hold yet, and this
// host's own key differing from its lease.
func TestAddWireGuard(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	no, yes := false, true
	leases := []lease.Lease{
		wgStatusLease("10.244.1.0/24", "192.168.0.1", wgKey(t, 1)), // self
		wgStatusLease("10.244.2.0/24", "192.168.0.2", wgKey(t, 2)), // silent, port open: no handshake
		wgStatusLease("10.244.3.0/24", "192.168.0.3", wgKey(t, 3)), // silent, port closed
		wgStatusLease("10.244.4.0/24", "192.168.0.4", wgKey(t, 4)), // silent, device has its old key
		wgStatusLease("10.244.5.0/24", "192.168.0.5", wgKey(t, 5)), // answers
	}
	gw := Problem{Code: CodeGatewayNoAnswer, Message: "pod gateway silent"}
	r := Report{Leases: []Row{
		{Subnet: "10.244.1.0/24", Self: true},
		{Subnet: "10.244.2.0/24", Check: &Check{PortUnreachable: &no}, Problems: []Problem{gw}},
		{Subnet: "10.244.3.0/24", Check: &Check{PortUnreachable: &yes}, Problems: []Problem{{Code: CodeUDPPortClosed}}},
		{Subnet: "10.244.4.0/24", Check: &Check{}, Problems: []Problem{gw}},
		{Subnet: "10.244.5.0/24", Check: &Check{Reply: true}},
	}}
	ownPub := wgKey(t, 9) // not what the lease publishes
	dev := wireguard.DeviceStatus{PublicKey: ownPub, ListenPort: 51820, Peers: []wireguard.PeerStatus{
		{Key: wgKey(t, 2), Endpoint: netip.MustParseAddrPort("192.168.0.2:51820"), TxBytes: 888, LastHandshake: now.Add(-10 * time.Minute)},
		{Key: wgKey(t, 3), Endpoint: netip.MustParseAddrPort("192.168.0.3:51820"), TxBytes: 148},
		{Key: wgKey(t, 7), Endpoint: netip.MustParseAddrPort("192.168.0.4:51820"), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.4.0/24")}},
		{Key: wgKey(t, 5), Endpoint: netip.MustParseAddrPort("192.168.0.5:51820")},
	}}
	addWireGuard(&r, leases, dev, nil, "/run/flannel/flannel-wg.sock", now)

	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGOwnKey || !strings.Contains(r.Problems[0].Message, ownPub.String()) {
		t.Errorf("host problems = %+v", r.Problems)
	}
	codes := func(row Row) (out []string) {
		for _, p := range row.Problems {
			out = append(out, p.Code)
		}
		return out
	}
	if got := codes(r.Leases[1]); len(got) != 1 || got[0] != CodeWGNoHandshake ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "UDP port 51820 is blocked") ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "does not hold the public key "+wgKey(t, 2).String()) ||
		!strings.Contains(r.Leases[1].Problems[0].Message, "last: 10m0s ago") {
		t.Errorf("no handshake, port open: %+v", r.Leases[1].Problems)
	}
	if got := codes(r.Leases[2]); len(got) != 2 || got[1] != CodeWGNoHandshake || !strings.Contains(r.Leases[2].Problems[1].Message, "nothing receives on UDP port 51820") {
		t.Errorf("no handshake, port closed: %+v", r.Leases[2].Problems)
	}
	if got := codes(r.Leases[3]); len(got) != 1 || got[0] != CodeWGPeerKey || !strings.Contains(r.Leases[3].Problems[0].Message, wgKey(t, 7).String()) {
		t.Errorf("old key: %+v", r.Leases[3].Problems)
	}
	if len(r.Leases[4].Problems) != 0 || r.Leases[4].Status != "ok" {
		t.Errorf("answering peer: %+v", r.Leases[4])
	}
	if r.OK || r.ProblemCount != 5 {
		t.Errorf("report OK %v with %d problems", r.OK, r.ProblemCount)
	}

	// The device cannot be asked: one host problem naming the socket.
	r = Report{}
	addWireGuard(&r, nil, wireguard.DeviceStatus{}, errors.New("connection refused"), "/run/x/flannel-wg.sock", now)
	if len(r.Problems) != 1 || r.Problems[0].Code != CodeWGDevice || !strings.Contains(r.Problems[0].Message, "/run/x/flannel-wg.sock") {
		t.Errorf("no device: %+v", r.Problems)
	}
}
