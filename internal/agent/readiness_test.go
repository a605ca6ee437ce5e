package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/lease"
)

func TestPeersDown(t *testing.T) {
	mk := func(sn, typ string) lease.Lease {
		return lease.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: lease.Attrs{BackendType: typ}}
	}
	own := mk("10.5.1.0/24", "vxlan")
	three := []lease.Lease{own, mk("10.5.2.0/24", "vxlan"), mk("10.5.3.0/24", "vxlan"), mk("10.5.4.0/24", "vxlan")}
	peerErr := func(sn string) error {
		return fmt.Errorf("peer 10.4.7.2 (subnet %s): replace route: no such device", sn)
	}
	tests := []struct {
		name   string
		leases []lease.Lease
		err    error
		want   string // substring of the reason; "" means ready
	}{
		{"no error", three, nil, ""},
		{"one bad peer among three", three, errors.Join(peerErr("10.5.2.0/24")), ""},
		{"one bad peer with three failed entries", three, errors.Join(peerErr("10.5.2.0/24"), peerErr("10.5.2.0/24"), peerErr("10.5.2.0/24")), ""},
		{"every peer failed", three, errors.Join(peerErr("10.5.2.0/24"), peerErr("10.5.3.0/24"), peerErr("10.5.4.0/24")), "none of the 3 peers could be programmed: peer 10.4.7.2 (subnet 10.5.2.0/24)"},
		{"device missing", three, errors.Join(peerErr("10.5.2.0/24"), errors.New("vxlan: device flannel.1: look up device: no such device")), "the backend failed: vxlan: device flannel.1"},
		{"device missing, no peers", []lease.Lease{own}, errors.New("vxlan: device flannel.1: gone"), "the backend failed"},
		{"stale entry only", three, errors.Join(errors.New("stale entry: fdb del: busy")), ""},
		{"a peer of another backend does not count", append(three[:2:2], mk("10.5.9.0/24", "host-gw")), errors.Join(peerErr("10.5.2.0/24")), "none of the 1 peers"},
		{"an error about a lease that is no peer of ours", three, errors.Join(peerErr("10.5.9.0/24")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := peersDown(own, tt.leases, tt.err)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("peersDown = %q, want %q", got, tt.want)
			}
		})
	}
}
