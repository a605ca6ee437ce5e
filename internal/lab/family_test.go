package lab

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestMirror6(t *testing.T) {
	for v4, v6 := range map[string]string{
		"10.4.7.21":  "fd00:10:4:7::21",
		"10.4.7.12":  "fd00:10:4:7::12",
		"10.4.8.1":   "fd00:10:4:8::1",
		"10.4.7.220": "fd00:10:4:7::220",
		"10.4.14.0":  "fd00:10:4:14::",
	} {
		if got := mirror6(netip.MustParseAddr(v4)); got.String() != v6 {
			t.Errorf("mirror6(%s) = %s, want %s", v4, got, v6)
		}
	}
}

// A dual lab adds an IPv6 twin to every underlay address, the IPv6 keys
// to the network config and --public-ipv6 to the agents; an IPv6 lab
// (Kubernetes only) has no IPv4 address anywhere and an IPv6-only
// config, and its control plane hands out /64s of the IPv6 network.
func TestPlanFamilies(t *testing.T) {
	dual, err := Plan(Spec{Prefix: "d", Hosts: 3, Segments: 2, Backend: "vxlan", IPFamily: FamilyDual, StateRoot: "/run/x", IPMasq: true})
	if err != nil {
		t.Fatal(err)
	}
	h3 := dual.Hosts[2]
	if h3.Addr.String() != "10.4.8.23/24" || h3.Addr6.String() != "fd00:10:4:8::23/64" || h3.Gateway6.String() != "fd00:10:4:8::1" {
		t.Errorf("h3 = %s %s via %s", h3.Addr, h3.Addr6, h3.Gateway6)
	}
	if u := dual.Underlay; u.Addr.String() != "10.4.7.12/24" || u.Addr6.String() != "fd00:10:4:7::12/64" || u.Gateway6.String() != "fd00:10:4:7::1" {
		t.Errorf("underlay = %+v", u)
	}
	if leg := dual.Router.Legs[1]; leg.Addr6.String() != "fd00:10:4:8::1/64" {
		t.Errorf("router leg 2 = %+v", leg)
	}
	if dual.Internet.Addr6.String() != "fd00:10:4:7::99/64" {
		t.Errorf("internet = %+v", dual.Internet)
	}
	if want := `{"Network": "172.7.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`; dual.Etcd.Config != want {
		t.Errorf("config = %s, want %s", dual.Etcd.Config, want)
	}
	args := dual.AgentArgs(h3)
	if !slices.Contains(args, "--public-ip=10.4.8.23") || !slices.Contains(args, "--public-ipv6=fd00:10:4:8::23") {
		t.Errorf("agent args %v lack a public address of each family", args)
	}

	v4, err := Plan(Spec{Prefix: "f", StateRoot: "/run/x"})
	if err != nil {
		t.Fatal(err)
	}
	if h := v4.Hosts[0]; h.Addr6.IsValid() || v4.Underlay.Addr6.IsValid() || strings.Contains(v4.Etcd.Config, "IPv6") ||
		slices.ContainsFunc(v4.AgentArgs(h), func(a string) bool { return strings.HasPrefix(a, "--public-ipv6") }) {
		t.Errorf("an IPv4 lab has IPv6: %+v %s", h, v4.Etcd.Config)
	}

	v6, err := Plan(Spec{Prefix: "s", Hosts: 2, IPFamily: FamilyIPv6, Store: StoreKube, StateRoot: "/run/x"})
	if err != nil {
		t.Fatal(err)
	}
	if h := v6.Hosts[1]; h.Addr.IsValid() || h.Addr6.String() != "fd00:10:4:7::22/64" || v6.Underlay.Addr.IsValid() {
		t.Errorf("IPv6 lab host %+v, underlay %+v", h, v6.Underlay)
	}
	if want := `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "host-gw"}}`; v6.Etcd.Config != want {
		t.Errorf("config = %s, want %s", v6.Etcd.Config, want)
	}
	k := v6.Kube
	if k.Addr.String() != "fd00:10:4:7::12" || k.APIServer != "https://[fd00:10:4:7::12]:6443" || k.ClusterCIDRFlag() != "fd00:10:244::/56" || k.NodeCIDRBits != 64 {
		t.Errorf("IPv6 lab's control plane %+v", k)
	}
	args = v6.AgentArgs(v6.Hosts[0])
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--public-ip=") }) || !slices.Contains(args, "--public-ipv6=fd00:10:4:7::21") {
		t.Errorf("IPv6 lab agent args %v", args)
	}
	dk, err := Plan(Spec{Prefix: "dk", IPFamily: FamilyDual, Store: StoreKube, StateRoot: "/run/x"})
	if err != nil {
		t.Fatal(err)
	}
	if f := dk.Kube.ClusterCIDRFlag(); f != "172.7.0.0/16,fd00:10:244::/56" || dk.Kube.NodeCIDRBits != 24 || dk.Kube.NodeCIDRBitsIPv6 != 64 {
		t.Errorf("dual lab's control plane %+v (%s)", dk.Kube, f)
	}
}

func TestPlanRefusesBadFamilies(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{IPFamily: "ipv5"}, `lab ip family "ipv5": want ipv4, dual or ipv6`},
		{Spec{IPFamily: FamilyIPv6}, "needs --store kube"},
		{Spec{IPFamily: FamilyDual, IPv6Network: netip.MustParsePrefix("fd00:10:244::/64")}, "want a masked IPv6 network of /56 or larger"},
		{Spec{IPFamily: FamilyDual, IPv6Network: netip.MustParsePrefix("10.0.0.0/8")}, "want a masked IPv6 network"},
		{Spec{IPFamily: FamilyDual, IPv6Network: netip.MustParsePrefix("fd00:10:4::/48")}, "overlaps the underlay"},
	} {
		c.spec.StateRoot = "/run/x"
		if _, err := Plan(c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Plan(%+v) = %v, want an error with %q", c.spec, err, c.want)
		}
	}
}

// With checks over IPv6 the table gets a FAMILY column and the summary a
// verdict per family; an IPv4 lab's output stays as it was.
func TestReportByFamily(t *testing.T) {
	a := netip.MustParseAddr
	ok4 := Check{Kind: PodToPod, From: Endpoint{"h1p1", a("172.7.1.2")}, To: Endpoint{"h2p1", a("172.7.2.2")}, Path: "host-gw", SeenSource: a("172.7.1.2")}
	bad6 := Check{Kind: PodToPod, From: Endpoint{"h1p1", a("fd00:10:244:1::2")}, To: Endpoint{"h2p1", a("fd00:10:244:2::2")}, Path: "no route",
		ICMPErr: errors.New("no echo reply"), TCPErr: errors.New("connect: no route")}
	r := Result{Checks: []Check{ok4, bad6}}
	var b bytes.Buffer
	if err := WriteReport(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"FAMILY  FROM",
		"IPv6    h1p1  fd00:10:244:1::2",
		"IPv4: 1/1 pod pairs ok, source IPs preserved; 0/0 host→pod ok; IPv6: 0/1 pod pairs ok; 0/0 host→pod ok",
		"pod pairs by path: IPv4 host-gw 1, IPv6 no route 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := WriteReport(&b, Result{Checks: []Check{ok4}}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(out, "FAMILY") || strings.Contains(out, "IPv4") || !strings.Contains(out, "pod pairs by path: host-gw 1") {
		t.Errorf("IPv4-only report changed:\n%s", out)
	}
}

// --wireguard-mode writes wireguard's Mode into the network config beside
// the Type; it is refused on another backend, and a Mode wireguard does
// not know is refused up front, naming it.
func TestWireGuardModeConfig(t *testing.T) {
	topo, err := Plan(Spec{Prefix: "w", Hosts: 2, Backend: "wireguard", WireGuardMode: "auto", IPFamily: FamilyDual, StateRoot: "/run/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := topo.Etcd.Config, `{"Network": "172.7.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "wireguard", "Mode": "auto"}}`; got != want {
		t.Errorf("config %s, want %s", got, want)
	}
	if devs := wireGuardDevices(topo.Spec); len(devs) != 1 || devs[0].Name != "flannel-wg" || len(devs[0].Networks) != 2 {
		t.Errorf("Mode auto's devices: %+v", devs)
	}
	if devs := wireGuardDevices(Spec{Backend: "wireguard", Network: DefaultNetwork, IPFamily: FamilyDual, IPv6Network: DefaultIPv6Network}); len(devs) != 2 {
		t.Errorf("Mode separate's devices: %+v", devs)
	}
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Hosts: 2, Backend: "vxlan", WireGuardMode: "auto"}, "a wireguard option, not one of backend vxlan"},
		{Spec{Hosts: 2, Backend: "wireguard", WireGuardMode: "both"}, `Mode "both"`},
	} {
		if _, err := Plan(c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Plan(%+v): %v, want %q", c.spec, err, c.want)
		}
	}
}
