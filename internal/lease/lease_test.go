package lease

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	vx := func(subnet, mac string, exp time.Time) Lease {
		return Lease{Subnet: pfx(subnet), Expiration: exp, Attrs: Attrs{PublicIP: otherIP, BackendType: "vxlan",
			BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac))}}
	}
	later := soon.Add(time.Hour)
	prev := []Lease{
		vx("10.1.3.0/24", "aa:aa:aa:aa:aa:03", soon),
		vx("10.1.1.0/24", "aa:aa:aa:aa:aa:01", soon),
		vx("10.1.2.0/24", "aa:aa:aa:aa:aa:02", soon),
		vx("10.1.4.0/24", "aa:aa:aa:aa:aa:04", soon),
		vx("10.1.5.0/24", "aa:aa:aa:aa:aa:05", soon),
		vx("10.1.7.0/24", "aa:aa:aa:aa:aa:07", soon),
	}
	reordered := vx("10.1.4.0/24", "", later)
	reordered.Attrs.BackendData = json.RawMessage(`{ "VtepMAC": "aa:aa:aa:aa:aa:04", "VNI": 1 }`)
	withV6 := vx("10.1.7.0/24", "aa:aa:aa:aa:aa:07", soon)
	withV6.IPv6Subnet = pfx("fc00:0:0:7::/64")
	next := []Lease{
		vx("10.1.9.0/24", "aa:aa:aa:aa:aa:09", soon),  // added
		vx("10.1.2.0/24", "aa:aa:aa:aa:aa:22", soon),  // new VtepMAC: changed
		vx("10.1.1.0/24", "aa:aa:aa:aa:aa:01", later), // renewed only: unchanged
		reordered, // same JSON value: unchanged
		vx("10.1.5.0/24", "aa:aa:aa:aa:aa:05", time.Time{}), // became a reservation: unchanged
		withV6, // gained an IPv6 subnet: changed
		vx("10.1.8.0/24", "aa:aa:aa:aa:aa:08", soon), // added
	}
	c := Diff(prev, next)
	check := func(name string, got []Lease, want ...string) {
		t.Helper()
		var s []string
		for _, l := range got {
			s = append(s, l.Subnet.String())
		}
		if fmt.Sprint(s) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, s, want)
		}
	}
	check("Added", c.Added, "10.1.8.0/24", "10.1.9.0/24")
	check("Removed", c.Removed, "10.1.3.0/24")
	check("Changed", c.Changed, "10.1.2.0/24", "10.1.7.0/24")
	if string(c.Changed[0].Attrs.BackendData) != `{"VNI":1,"VtepMAC":"aa:aa:aa:aa:aa:22"}` {
		t.Errorf("Changed holds %s, want the next version", c.Changed[0].Attrs.BackendData)
	}
	if c.Empty() {
		t.Error("Empty() = true for a diff with changes")
	}
	if d := Diff(prev, prev); !d.Empty() {
		t.Errorf("Diff of a snapshot with itself = %+v, want empty", d)
	}
	if d := Diff(nil, prev); len(d.Added) != len(prev) || len(d.Removed)+len(d.Changed) != 0 {
		t.Errorf("Diff from nothing = %+v, want all added", d)
	}
	if d := Diff(prev, nil); len(d.Removed) != len(prev) || len(d.Added)+len(d.Changed) != 0 {
		t.Errorf("Diff to nothing = %+v, want all removed", d)
	}
}

func TestRenewAt(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		exp    time.Time
		margin time.Duration
		want   time.Time
	}{
		{"margin before expiry", now.Add(24 * time.Hour), time.Hour, now.Add(23 * time.Hour)},
		{"margin already passed", now.Add(30 * time.Minute), time.Hour, now},
		{"expired", now.Add(-time.Hour), time.Hour, now},
		{"zero margin", now.Add(time.Hour), 0, now.Add(time.Hour)},
		{"reservation never", time.Time{}, time.Hour, time.Time{}},
	}
	for _, tt := range tests {
		if got := RenewAt(tt.exp, tt.margin, now); !got.Equal(tt.want) {
			t.Errorf("%s: RenewAt(%v, %v) = %v, want %v", tt.name, tt.exp, tt.margin, got, tt.want)
		}
	}
}

func TestLeaseString(t *testing.T) {
	tests := []struct {
		l    Lease
		want string
	}{
		{lease("172.7.21.0/24", ourIP, soon), "172.7.21.0/24 PublicIP=10.4.7.21 host-gw expires=2030-01-01T00:00:00Z"},
		{reservation("172.7.22.0/24", ourIP), "172.7.22.0/24 PublicIP=10.4.7.21 host-gw reservation"},
		{Lease{Subnet: pfx("10.5.1.0/24"), IPv6Subnet: pfx("fc00::/64"), Attrs: Attrs{PublicIPv6: netip.MustParseAddr("fc00::9")},
			Expiration: time.Date(2030, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))},
			"10.5.1.0/24&fc00::/64 PublicIP=none PublicIPv6=fc00::9 expires=2030-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// Key and PublicAddr name a lease by its IPv4 half, and an IPv6-only
// lease (a Node's IPv6 podCIDR) by its IPv6 half.
func TestKeyAndPublicAddr(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("10.5.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")
	pub, pub6 := netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fd00:4:7::1")
	for _, c := range []struct {
		name    string
		l       Lease
		key     netip.Prefix
		address netip.Addr
	}{
		{"IPv4", Lease{Subnet: v4, Attrs: Attrs{PublicIP: pub}}, v4, pub},
		{"dual-stack", Lease{Subnet: v4, IPv6Subnet: v6, Attrs: Attrs{PublicIP: pub, PublicIPv6: pub6}}, v4, pub},
		{"IPv6-only", Lease{IPv6Subnet: v6, Attrs: Attrs{PublicIPv6: pub6}}, v6, pub6},
		{"none", Lease{}, netip.Prefix{}, netip.Addr{}},
	} {
		if k, a := c.l.Key(), c.l.PublicAddr(); k != c.key || a != c.address {
			t.Errorf("%s: Key %s, PublicAddr %s; want %s, %s", c.name, k, a, c.key, c.address)
		}
	}
	// Diff keys IPv6-only leases apart rather than as one invalid subnet.
	a := Lease{IPv6Subnet: v6, Attrs: Attrs{PublicIPv6: pub6, BackendType: "host-gw"}}
	b := Lease{IPv6Subnet: netip.MustParsePrefix("fd00:10:244:2::/64"), Attrs: Attrs{PublicIPv6: netip.MustParseAddr("fd00:4:7::2"), BackendType: "host-gw"}}
	if ch := Diff([]Lease{a}, []Lease{a, b}); len(ch.Added) != 1 || ch.Added[0].IPv6Subnet != b.IPv6Subnet || len(ch.Changed)+len(ch.Removed) != 0 {
		t.Errorf("Diff of IPv6-only leases: %+v", ch)
	}
}
