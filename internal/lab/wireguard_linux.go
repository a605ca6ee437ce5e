package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
)

// waitWireGuardPeers waits, for a wireguard lab, until each WireGuard
// device of every host (flannel-wg, and flannel-wg-v6 in a lab with IPv6)
// knows every other host as a peer and has completed a handshake with it
// (the backend starts one with each new peer). The route check does not
// tell: each device carries one route for a whole network from the
// start. A ping sent before the far side knows the sender would have its
// handshake dropped there, and WireGuard tries again only after 5 s.
func (l *Lab) waitWireGuardPeers(ctx context.Context) error {
	if l.topo.Spec.Backend != wireguard.BackendType || len(l.topo.Hosts) < 2 {
		return nil
	}
	t0 := time.Now()
	want := len(l.topo.Hosts) - 1
	devs := wireGuardDevices(l.topo.Spec)
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	for _, h := range l.topo.Hosts {
		for _, d := range devs {
			sock := filepath.Join(filepath.Dir(h.SubnetFile), d.Socket)
			err := l.poll(ctx, nil, h.Name+"'s "+d.Name+" to know every other host", func() error {
				st, err := wireguard.ReadStatusSocket(sock, time.Second)
				if err != nil {
					return err
				}
				peers := st.Peers
				if len(peers) != want {
					return fmt.Errorf("%s: %s has %d peers, want %d", h.Name, d.Name, len(peers), want)
				}
				for _, p := range peers {
					if p.LastHandshake.IsZero() {
						return fmt.Errorf("%s: %s has no handshake yet with the peer at %s", h.Name, d.Name, p.Endpoint)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	l.out.say("wireguard: every host's %s has a session with each of the other %d hosts %s", strings.Join(names, " and "), want, formatSince(t0))
	return nil
}
