package status

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
)

// Problem codes of the wireguard backend.
const (
	// CodeWGOwnKey: this host's lease publishes another public key than
	// its WireGuard device uses, so peers' handshakes fail here.
	CodeWGOwnKey = "wireguard_own_key"
	// CodeWGPeerKey: a device holds no peer with the key the peer's
	// lease publishes for it (the agent has not applied it).
	CodeWGPeerKey = "wireguard_peer_key"
	// CodeWGNoHandshake: the device has the peer's key but no recent
	// handshake: a wrong key on the peer or a blocked UDP port.
	CodeWGNoHandshake = "wireguard_no_handshake"
	// CodeWGDevice: one of the agent's devices could not be asked at all.
	CodeWGDevice = "wireguard_device"
)

// wgSessionLife is how long WireGuard uses one session's keys (its
// Reject-After-Time); a handshake older than that leaves no session.
const wgSessionLife = 180 * time.Second

// wgDevice is what --check read of one of the agent's WireGuard devices.
type wgDevice struct {
	name string
	sock string // its status socket
	// v6key says the leases' BackendV6Data, not their BackendData,
	// publishes the key and port of their devices like this one
	// (wireguard.KeyHalf).
	v6key bool
	// probed says --check's probe of a peer (to its IPv4 pod address, or
	// its IPv6 one in an IPv6-only network) goes through this device:
	// false for flannel-wg-v6 in a dual-stack network.
	probed bool
	st     wireguard.DeviceStatus
	err    error // the device could not be asked
}

// wireguardDevices are the devices of the agent whose subnet file is
// subnetFile, configured by cfg, with their status sockets in its state
// directory (the subnet file's); nil when cfg's options are invalid
// (Build has said so).
func wireguardDevices(cfg *netconf.Config, subnetFile string) []wgDevice {
	specs, err := wireguard.DevicesOf(cfg)
	if err != nil {
		return nil
	}
	var out []wgDevice
	for _, d := range specs {
		v6key := wireguard.KeyHalf(cfg, d.Name)
		out = append(out, wgDevice{name: d.Name, sock: filepath.Join(filepath.Dir(subnetFile), d.Socket),
			v6key: v6key, probed: !v6key || !cfg.EnableIPv4})
	}
	return out
}

// addWireGuard adds to r what the agent's WireGuard devices tell about the
// peers --check found silent, and about this host's own key: devs are the
// devices with what each reported (or why it could not be asked). A
// silent peer whose device entry has no handshake gets the two causes
// WireGuard cannot tell apart from this side, a wrong public key and a
// blocked port, in place of the generic "pod gateway does not answer". On
// a device no probe goes through (flannel-wg-v6 beside flannel-wg), a
// dual-stack peer whose key the device does not hold is reported, since
// its pods' IPv6 traffic is dropped there. Pure.
func addWireGuard(r *Report, leases []lease.Lease, devs []wgDevice, now time.Time) {
	for _, d := range devs {
		if d.err != nil {
			r.Problems = append(r.Problems, Problem{Code: CodeWGDevice, Message: fmt.Sprintf(
				"cannot ask the agent's WireGuard device %s through %s (%v): is the agent running on this host with this --subnet-file?", d.name, d.sock, d.err)})
		}
	}
	rowKey := func(subnet, subnet6 string) string { return subnet + "|" + subnet6 }
	byRow := make(map[string]lease.Lease, len(leases))
	for _, l := range leases {
		byRow[rowKey(l.Subnet.String(), prefixOrEmpty(l.IPv6Subnet))] = l
	}
	for i := range r.Leases {
		row := &r.Leases[i]
		l, ok := byRow[rowKey(row.Subnet, row.IPv6Subnet)]
		if !ok || l.Attrs.BackendType != wireguard.BackendType || row.Refused != "" {
			continue
		}
		for _, d := range devs {
			if d.err == nil {
				addWireGuardRow(r, row, l, d, now)
			}
		}
	}
	finish(r)
}

// addWireGuardRow is addWireGuard for one lease and one device.
func addWireGuardRow(r *Report, row *Row, l lease.Lease, d wgDevice, now time.Time) {
	field, raw, parse := "BackendData", l.Attrs.BackendData, wireguard.ParsePeerData
	if d.v6key {
		if !l.IPv6Subnet.IsValid() {
			return // a host on an IPv4-only config: no peer of this device
		}
		field, raw, parse = "BackendV6Data", l.Attrs.BackendV6Data, wireguard.ParsePeerV6Data
	}
	pd, err := parse(raw)
	if err != nil {
		return // Build, or the backend's refusal of the IPv6 half, reported it
	}
	dev := d.st
	// The probe whose traffic crosses this device: Check, or CheckIPv6 for
	// flannel-wg-v6 beside flannel-wg, whose explanations are then marked
	// as the IPv6 side's.
	check, prefix, probed := row.Check, "", d.probed
	if !probed && row.CheckIPv6 != nil {
		check, prefix, probed = row.CheckIPv6, "IPv6: ", true
	}
	if row.Self {
		if !dev.PublicKey.IsZero() && pd.Key != dev.PublicKey {
			r.Problems = append(r.Problems, Problem{Code: CodeWGOwnKey,
				Message: fmt.Sprintf("this host's lease publishes the public key %s in its %s, but %s uses %s: every peer encrypts its handshakes to the published key, so none completes here. The key file changed under a running agent, or the lease was edited; restart the agent so that it publishes its key", pd.Key, field, d.name, dev.PublicKey),
				Want:    pd.Key.String(), Have: dev.PublicKey.String()})
		}
		return
	}
	byKey := make(map[wireguard.Key]wireguard.PeerStatus, len(dev.Peers))
	for _, p := range dev.Peers {
		byKey[p.Key] = p
	}
	if !probed {
		if slices.ContainsFunc(row.Problems, func(p Problem) bool { return p.Code == CodeBadLease }) {
			return // its IPv6 half is refused: no peer of this device
		}
		if _, ok := byKey[pd.Key]; !ok {
			row.Problems = append(row.Problems, Problem{Code: CodeWGPeerKey, Message: fmt.Sprintf(
				"%s has no peer with the public key %s that the lease's %s publishes, so pods' IPv6 traffic to %s is dropped here; %s", d.name, pd.Key, field, l.IPv6Subnet, hint)})
		}
		return
	}
	if check == nil || check.Reply {
		return // not probed, or traffic passes
	}
	subnet := l.Key().Masked()
	p, ok := byKey[pd.Key]
	if !ok {
		msg := fmt.Sprintf("%s has no peer with the public key %s that the lease publishes", d.name, pd.Key)
		if i := slices.IndexFunc(dev.Peers, func(p wireguard.PeerStatus) bool { return slices.Contains(p.AllowedIPs, subnet) }); i >= 0 {
			msg += fmt.Sprintf("; it still sends %s to the key %s (the peer's old key): the agent has not applied the new lease", subnet, dev.Peers[i].Key)
		}
		replaceGatewayProblem(row, prefix, Problem{Code: CodeWGPeerKey, Message: prefix + msg + "; " + hint})
		return
	}
	if !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) < wgSessionLife {
		return
	}
	last := "never"
	if !p.LastHandshake.IsZero() {
		last = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
	}
	port := dev.ListenPort
	if pd.Port != 0 {
		port = pd.Port
	}
	msg := fmt.Sprintf("no WireGuard handshake with %s (last: %s; sent %d bytes, received %d): ", p.Endpoint, last, p.TxBytes, p.RxBytes)
	switch {
	case check.PortUnreachable != nil && *check.PortUnreachable:
		msg += fmt.Sprintf("nothing receives on UDP port %d there (see above): is the agent running on that host?", port)
	default:
		msg += fmt.Sprintf("either UDP port %d is blocked between the hosts (a firewall drops it; no ICMP comes back), or the peer's WireGuard device does not hold the public key %s its lease publishes (a wrong key: `weft status` on that host compares the two). Allow UDP %d both ways between the hosts' public addresses, then check the key there",
			port, pd.Key, port)
	}
	replaceGatewayProblem(row, prefix, Problem{Code: CodeWGNoHandshake, Message: prefix + msg})
}

// replaceGatewayProblem adds p to row in place of the generic "pod
// gateway does not answer" of the probe p explains: with prefix "IPv6: "
// the IPv6 probe's, else any other (the IPv4 probe's, or the only one).
func replaceGatewayProblem(row *Row, prefix string, p Problem) {
	row.Problems = slices.DeleteFunc(row.Problems, func(q Problem) bool {
		if q.Code != CodeGatewayNoAnswer {
			return false
		}
		v6 := strings.HasPrefix(q.Message, "IPv6: ")
		return v6 == (prefix == "IPv6: ")
	})
	row.Problems = append(row.Problems, p)
}
