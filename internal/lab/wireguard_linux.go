package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/internal/backend/wireguard"
)

// waitWireGuardPeers waits, for a wireguard lab, until every host's
// WireGuard device knows every other host as a peer and has completed a
// handshake with it (the backend starts one with each new peer). The route check does
// not tell: flannel-wg carries one route for the whole network from the
// start. A ping sent before the far side knows the sender would have its
// handshake dropped there, and WireGuard tries again only after 5 s.
func (l *Lab) waitWireGuardPeers(ctx context.Context) error {
	if l.topo.Spec.Backend != wireguard.BackendType || len(l.topo.Hosts) < 2 {
		return nil
	}
	t0 := time.Now()
	want := len(l.topo.Hosts) - 1
	for _, h := range l.topo.Hosts {
		sock := filepath.Join(filepath.Dir(h.SubnetFile), wireguard.StatusSocketName)
		err := l.poll(ctx, nil, h.Name+"'s WireGuard device to know every other host", func() error {
			st, err := wireguard.ReadStatusSocket(sock, time.Second)
			if err != nil {
				return err
			}
			peers := st.Peers
			if len(peers) != want {
				return fmt.Errorf("%s: flannel-wg has %d peers, want %d", h.Name, len(peers), want)
			}
			for _, p := range peers {
				if p.LastHandshake.IsZero() {
					return fmt.Errorf("%s: no handshake yet with the peer at %s", h.Name, p.Endpoint)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	l.out.say("wireguard: every host's flannel-wg has a session with each of the other %d hosts %s", want, formatSince(t0))
	return nil
}
