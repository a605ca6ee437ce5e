package cni

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestStaleAddrs(t *testing.T) {
	subnet := netip.MustParsePrefix("10.244.5.0/24")
	for _, tc := range []struct {
		name  string
		addrs []netip.Prefix
		want  []netip.Prefix
	}{
		{"no address", nil, nil},
		{"current gateway", prefixes("10.244.5.1/24"), nil},
		{"old subnet", prefixes("10.244.2.1/24"), prefixes("10.244.2.1/24")},
		{"other cluster", prefixes("10.42.7.1/24"), prefixes("10.42.7.1/24")},
		{"same address, other length", prefixes("10.244.5.1/16"), prefixes("10.244.5.1/16")},
		// Someone else's address inside the subnet: the bridge plugin's
		// own error is the answer, not a silent removal.
		{"foreign host in subnet", prefixes("10.244.5.9/24"), nil},
		{"link-local kept", prefixes("169.254.3.3/16"), nil},
		{"ipv6 ignored", prefixes("2001:cafe:42:2::1/64", "fe80::1/64"), nil},
		{"mixed", prefixes("10.244.5.1/24", "10.244.2.1/24", "fe80::1/64"), prefixes("10.244.2.1/24")},
	} {
		if got := StaleAddrs(tc.addrs, subnet); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: StaleAddrs(%v) = %v, want %v", tc.name, tc.addrs, got, tc.want)
		}
	}
}

func TestStaleBridgeErrorNamesEverything(t *testing.T) {
	rs := []Reservation{
		{IP: netip.MustParseAddr("10.244.2.7"), ContainerID: "3f2a9c", IfName: "eth0"},
		{IP: netip.MustParseAddr("10.244.5.3"), ContainerID: "new1", IfName: "eth0"},
		{IP: netip.MustParseAddr("10.244.2.9"), ContainerID: "77aa01"},
	}
	stale := prefixes("10.244.2.1/24")
	e := &StaleBridgeError{
		Bridge: "cni0",
		Stale:  stale,
		Subnet: netip.MustParsePrefix("10.244.5.0/24"),
		Ports:  []string{"veth1a2b", "veth3c4d"},
		Pods:   podsIn(rs, stale),
	}
	msg := e.Error()
	for _, want := range []string{
		`"cni0"`, "10.244.2.1/24", "10.244.2.0/24", "10.244.5.0/24", "10.244.5.1/24",
		"10.244.2.7 (container 3f2a9c, eth0)", "10.244.2.9 (container 77aa01)",
		"veth1a2b", "veth3c4d", "Delete those pods", "old subnet",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "10.244.5.3") {
		t.Errorf("message names a pod of the new subnet:\n%s", msg)
	}

	e.Pods = nil
	if msg := e.Error(); !strings.Contains(msg, "veth1a2b, veth3c4d are still attached") {
		t.Errorf("without reservations the message must name the interfaces:\n%s", msg)
	}
}

func TestStaleBridgeErrorBoundsLists(t *testing.T) {
	var ports []string
	for range 25 {
		ports = append(ports, "vethx")
	}
	e := &StaleBridgeError{Bridge: "cni0", Stale: prefixes("10.1.1.1/24"), Subnet: netip.MustParsePrefix("10.1.2.0/24"), Ports: ports}
	if msg := e.Error(); !strings.Contains(msg, "and 15 more") {
		t.Errorf("long lists not bounded:\n%s", msg)
	}
}
