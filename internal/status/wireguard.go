package status

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lease"
)

// Problem codes of the wireguard backend.
const (
	// CodeWGOwnKey: this host's lease publishes another public key than
	// its WireGuard device uses, so peers' handshakes fail here.
	CodeWGOwnKey = "wireguard_own_key"
	// CodeWGPeerKey: the device holds no peer with the key the peer's
	// lease publishes (the agent has not applied it).
	CodeWGPeerKey = "wireguard_peer_key"
	// CodeWGNoHandshake: the device has the peer's key but no recent
	// handshake: a wrong key on the peer or a blocked UDP port.
	CodeWGNoHandshake = "wireguard_no_handshake"
	// CodeWGDevice: the agent's device could not be asked at all.
	CodeWGDevice = "wireguard_device"
)

// wgSessionLife is how long WireGuard uses one session's keys (its
// Reject-After-Time); a handshake older than that leaves no session.
const wgSessionLife = 180 * time.Second

// wireguardSocket is the status socket of the agent whose subnet file is
// subnetFile: the agent's state directory is the subnet file's.
func wireguardSocket(subnetFile string) string {
	return filepath.Join(filepath.Dir(subnetFile), wireguard.StatusSocketName)
}

// addWireGuard adds to r what the agent's WireGuard device tells about the
// peers --check found silent, and about this host's own key: dev is what
// the device reported (devErr when it could not be asked). A silent peer
// whose device entry has no handshake gets the two causes WireGuard cannot
// tell apart from this side, a wrong public key and a blocked port, in
// place of the generic "pod gateway does not answer". Pure.
func addWireGuard(r *Report, leases []lease.Lease, dev wireguard.DeviceStatus, devErr error, sock string, now time.Time) {
	if devErr != nil {
		r.Problems = append(r.Problems, Problem{Code: CodeWGDevice, Message: fmt.Sprintf(
			"cannot ask the agent's WireGuard device through %s (%v): is the agent running on this host with this --subnet-file?", sock, devErr)})
		finish(r)
		return
	}
	bySubnet := make(map[string]lease.Lease, len(leases))
	for _, l := range leases {
		bySubnet[l.Subnet.Masked().String()] = l
	}
	byKey := make(map[wireguard.Key]wireguard.PeerStatus, len(dev.Peers))
	for _, p := range dev.Peers {
		byKey[p.Key] = p
	}
	for i := range r.Leases {
		row := &r.Leases[i]
		l, ok := bySubnet[row.Subnet]
		if !ok || l.Attrs.BackendType != wireguard.BackendType || row.Refused != "" {
			continue
		}
		d, err := wireguard.ParsePeerData(l.Attrs.BackendData)
		if err != nil {
			continue // Build reported the lease as bad
		}
		if row.Self {
			if !dev.PublicKey.IsZero() && d.Key != dev.PublicKey {
				r.Problems = append(r.Problems, Problem{Code: CodeWGOwnKey,
					Message: fmt.Sprintf("this host's lease publishes the public key %s, but flannel-wg uses %s: every peer encrypts its handshakes to the published key, so none completes here. The key file changed under a running agent, or the lease was edited; restart the agent so that it publishes its key", d.Key, dev.PublicKey),
					Want:    d.Key.String(), Have: dev.PublicKey.String()})
			}
			continue
		}
		if row.Check == nil || row.Check.Reply {
			continue // not probed, or traffic passes
		}
		subnet := netip.MustParsePrefix(row.Subnet)
		p, ok := byKey[d.Key]
		if !ok {
			msg := fmt.Sprintf("flannel-wg has no peer with the public key %s that the lease publishes", d.Key)
			if i := slices.IndexFunc(dev.Peers, func(p wireguard.PeerStatus) bool { return slices.Contains(p.AllowedIPs, subnet) }); i >= 0 {
				msg += fmt.Sprintf("; it still sends %s to the key %s (the peer's old key): the agent has not applied the new lease", subnet, dev.Peers[i].Key)
			}
			replaceGatewayProblem(row, Problem{Code: CodeWGPeerKey, Message: msg + "; " + hint})
			continue
		}
		if !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) < wgSessionLife {
			continue
		}
		last := "never"
		if !p.LastHandshake.IsZero() {
			last = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		port := dev.ListenPort
		if d.Port != 0 {
			port = d.Port
		}
		msg := fmt.Sprintf("no WireGuard handshake with %s (last: %s; sent %d bytes, received %d): ", p.Endpoint, last, p.TxBytes, p.RxBytes)
		switch {
		case row.Check.PortUnreachable != nil && *row.Check.PortUnreachable:
			msg += fmt.Sprintf("nothing receives on UDP port %d there (see above): is the agent running on that host?", port)
		default:
			msg += fmt.Sprintf("either UDP port %d is blocked between the hosts (a firewall drops it; no ICMP comes back), or the peer's WireGuard device does not hold the public key %s its lease publishes (a wrong key: `weft status` on that host compares the two). Allow UDP %d both ways between the hosts' PublicIPs, then check the key there",
				port, d.Key, port)
		}
		replaceGatewayProblem(row, Problem{Code: CodeWGNoHandshake, Message: msg})
	}
	finish(r)
}

// replaceGatewayProblem adds p to row in place of the generic "pod
// gateway does not answer", which p explains.
func replaceGatewayProblem(row *Row, p Problem) {
	row.Problems = slices.DeleteFunc(row.Problems, func(q Problem) bool { return q.Code == CodeGatewayNoAnswer })
	row.Problems = append(row.Problems, p)
}
