package lease

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func withID(l Lease, id string) Lease { l.Attrs.HostID = id; return l }

// The decisions of issue 16 items 3 and 4: a live lease with our PublicIP
// and another host ID is refused; one without an ID (flannel, older weft)
// or with ours is reused; a subnet the config no longer fits is kept
// rather than replaced; a reservation moves the host, with a warning.
func TestPickSubnetIdentityAndMisfit(t *testing.T) {
	seed := `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`
	moved := `{"Network": "172.8.0.0/16", "Backend": {"Type": "host-gw"}}`
	longer := `{"Network": "172.7.0.0/16", "SubnetLen": 26, "Backend": {"Type": "host-gw"}}`
	narrow := `{"Network": "172.7.0.0/16", "SubnetMin": "172.7.10.0", "SubnetMax": "172.7.20.0", "Backend": {"Type": "host-gw"}}`
	const me, other = "aaaa", "bbbb"
	tests := []struct {
		name     string
		config   string
		existing []Lease
		previous string
		hostID   string
		newID    bool
		want     string // chosen subnet; "" any
		wantErr  error
		errHas   string
		warnHas  string // Pick.Warning contains; "" means none
		stale    []string
	}{
		{name: "live lease, same IP, same host ID: reused", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), me)}, previous: "172.7.21.0/24", want: "172.7.21.0/24"},
		{name: "live lease, same IP, no host ID (flannel, older weft): reused", config: seed, hostID: me,
			existing: []Lease{lease("172.7.21.0/24", ourIP, soon)}, want: "172.7.21.0/24"},
		{name: "live lease, same IP, other host ID: refused", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)},
			wantErr:  ErrPublicIPInUse, errHas: "two hosts use public IP 10.4.7.21: the live lease 172.7.21.0/24 carries host ID bbbb, this host is aaaa"},
		{name: "other host ID refused even when subnet.env names a free subnet", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)}, previous: "172.7.30.0/24", wantErr: ErrPublicIPInUse},
		{name: "other host ID refused beside a lease of ours", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other), withID(lease("172.7.22.0/24", ourIP, soon), me)},
			wantErr:  ErrPublicIPInUse},
		{name: "other host ID on another IP: ours reused", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", otherIP, soon), other), lease("172.7.22.0/24", ourIP, soon)}, want: "172.7.22.0/24"},
		{name: "state dir wiped: new host ID, subnet.env names the lease: taken back, loudly", config: seed, hostID: me, newID: true, previous: "172.7.21.0/24",
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)}, want: "172.7.21.0/24", warnHas: "taking back lease 172.7.21.0/24, which carries host ID bbbb"},
		{name: "new host ID but subnet.env names another subnet: refused", config: seed, hostID: me, newID: true, previous: "172.7.30.0/24",
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)}, wantErr: ErrPublicIPInUse},
		{name: "old host ID and subnet.env names the lease: refused", config: seed, hostID: me, previous: "172.7.21.0/24",
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)}, wantErr: ErrPublicIPInUse},
		{name: "no host ID of our own: flannel's behaviour", config: seed,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), other)}, want: "172.7.21.0/24"},
		{name: "previous valid under the config: reused", config: seed, hostID: me, previous: "172.7.21.0/24", want: "172.7.21.0/24"},
		{name: "previous outside the new Network: refused", config: moved, hostID: me, previous: "172.7.21.0/24",
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), me)},
			wantErr:  ErrSubnetMisfit, errHas: "subnet 172.7.21.0/24 (from its subnet.env) does not fit the network config (Network 172.8.0.0/16, SubnetLen 24): outside Network 172.8.0.0/16"},
		{name: "previous of another SubnetLen: refused", config: longer, hostID: me, previous: "172.7.21.0/24",
			wantErr: ErrSubnetMisfit, errHas: "length /24 is not SubnetLen /26"},
		{name: "previous outside SubnetMin..Max: refused", config: narrow, previous: "172.7.21.0/24",
			wantErr: ErrSubnetMisfit, errHas: "outside SubnetMin..SubnetMax"},
		{name: "live lease outside the new Network, no subnet.env: refused", config: moved, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), me)},
			wantErr:  ErrSubnetMisfit, errHas: "subnet 172.7.21.0/24 (from its lease)"},
		{name: "live lease without ID of another SubnetLen: refused", config: longer,
			existing: []Lease{lease("172.7.20.0/24", ourIP, soon)}, wantErr: ErrSubnetMisfit, errHas: "length /24 is not SubnetLen /26"},
		{name: "misfit leftover beside the reused lease subnet.env names: deleted", config: narrow, hostID: me, previous: "172.7.12.0/24",
			existing: []Lease{lease("172.7.12.0/24", ourIP, soon), lease("172.7.21.0/24", ourIP, soon)}, want: "172.7.12.0/24", stale: []string{"172.7.21.0/24"}},
		{name: "another host's misfit lease is not ours to keep", config: moved, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", otherIP, soon), other)}},
		{name: "reservation differing from the live lease: moved, loudly", config: seed, hostID: me, previous: "172.7.21.0/24",
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), me), reservation("172.7.50.0/24", ourIP)},
			want:     "172.7.50.0/24", stale: []string{"172.7.21.0/24"},
			warnHas: "this host moves from subnet 172.7.21.0/24 (from subnet.env) to the reservation 172.7.50.0/24 for public IP 10.4.7.21, as flannel does"},
		{name: "reservation differing from a live lease after a reboot (no subnet.env): moved, loudly", config: seed, hostID: me,
			existing: []Lease{withID(lease("172.7.21.0/24", ourIP, soon), me), reservation("172.7.50.0/24", ourIP)},
			want:     "172.7.50.0/24", stale: []string{"172.7.21.0/24"}, warnHas: "moves from its live lease 172.7.21.0/24 to the reservation 172.7.50.0/24"},
		{name: "reservation equal to the live subnet: quiet", config: seed, hostID: me, previous: "172.7.50.0/24",
			existing: []Lease{reservation("172.7.50.0/24", ourIP)}, want: "172.7.50.0/24"},
		{name: "reservation wins over a misfit previous: the administrator decided", config: moved, hostID: me, previous: "172.7.21.0/24",
			existing: []Lease{reservation("172.8.5.0/24", ourIP)}, want: "172.8.5.0/24", warnHas: "moves from subnet 172.7.21.0/24"},
		{name: "reservation with another host's ID: taken, with a warning", config: seed, hostID: me,
			existing: []Lease{withID(reservation("172.7.50.0/24", ourIP), other)}, want: "172.7.50.0/24",
			warnHas: "carries host ID bbbb of another host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := PickInput{Config: mustConfig(t, tt.config), Existing: tt.existing, PublicIP: ourIP, Previous: pfx(tt.previous),
				HostID: tt.hostID, NewHostID: tt.newID, Rand: rand.New(rand.NewPCG(1, 2))}
			p, err := PickSubnet(in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("PickSubnet = %+v, %v; want an error wrapping %v containing %q", p, err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("PickSubnet: %v", err)
			}
			if tt.want != "" && p.Subnet != pfx(tt.want) {
				t.Errorf("Subnet = %s, want %s (%s)", p.Subnet, tt.want, p.Reason)
			}
			if tt.warnHas == "" && p.Warning != "" || !strings.Contains(p.Warning, tt.warnHas) {
				t.Errorf("Warning = %q, want it to contain %q", p.Warning, tt.warnHas)
			}
			var stale []string
			for _, l := range p.Stale {
				stale = append(stale, l.Subnet.String())
			}
			if strings.Join(stale, ",") != strings.Join(tt.stale, ",") {
				t.Errorf("Stale = %v, want %v", stale, tt.stale)
			}
			for _, l := range p.Stale {
				if foreign(in, l) {
					t.Errorf("another host's lease %s marked stale", l)
				}
			}
		})
	}
}
