package kernel

import (
	"net/netip"
	"strings"
	"testing"
)

// rt parses the subset of `ip route` syntax that Route.Format prints, with
// devices named by the test's names table, so cases read like iproute2.
func rt(t *testing.T, s string) Route {
	t.Helper()
	f := strings.Fields(s)
	var r Route
	if f[0] == "default" {
		r.Dst = netip.MustParsePrefix("0.0.0.0/0")
	} else {
		r.Dst = netip.MustParsePrefix(f[0])
	}
	for i := 1; i < len(f); i++ {
		switch f[i] {
		case "via":
			i++
			r.Gw = netip.MustParseAddr(f[i])
		case "dev":
			i++
			idx, ok := testIndex[f[i]]
			if !ok {
				t.Fatalf("unknown dev %q", f[i])
			}
			r.LinkIndex = idx
		case "proto":
			i++
			switch f[i] {
			case "weft":
				r.Proto = ProtoWeft
			case "boot":
				r.Proto = 3
			case "kernel":
				r.Proto = 2
			case "dhcp":
				r.Proto = 16
			default:
				t.Fatalf("unknown proto %q", f[i])
			}
		case "metric":
			i++
			for _, c := range f[i] {
				r.Metric = r.Metric*10 + int(c-'0')
			}
		case "onlink":
			r.OnLink = true
		default:
			t.Fatalf("cannot parse %q in %q", f[i], s)
		}
	}
	return r
}

var (
	testNames = map[int]string{2: "eth0", 3: "eth1", 4: "cni0"}
	testIndex = map[string]int{"eth0": 2, "eth1": 3, "cni0": 4}
)

func routes(t *testing.T, lines ...string) []Route {
	t.Helper()
	var out []Route
	for _, l := range lines {
		out = append(out, rt(t, l))
	}
	return out
}

// ownedInNetwork is the host-gw policy: inside 10.244.0.0/16 (strictly),
// not the own 10.244.1.0/24, and via a gateway.
func ownedInNetwork(r Route) bool {
	network := netip.MustParsePrefix("10.244.0.0/16")
	own := netip.MustParsePrefix("10.244.1.0/24")
	return r.Gw.IsValid() && r.Dst.Bits() > network.Bits() &&
		network.Contains(r.Dst.Addr()) && !r.Dst.Overlaps(own)
}

func TestRouteFormat(t *testing.T) {
	cases := []struct {
		r    Route
		want string
	}{
		{Route{Dst: netip.MustParsePrefix("10.5.3.0/24"), Gw: netip.MustParseAddr("192.168.1.3"), LinkIndex: 2},
			"10.5.3.0/24 via 192.168.1.3 dev eth0"},
		{Route{Dst: netip.MustParsePrefix("10.5.3.0/24"), Gw: netip.MustParseAddr("10.5.3.0"), LinkIndex: 9, OnLink: true, Proto: ProtoWeft},
			"10.5.3.0/24 via 10.5.3.0 dev if9 proto weft onlink"},
		{Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.0.0.1"), LinkIndex: 3, Metric: 100, Proto: 16},
			"default via 10.0.0.1 dev eth1 proto dhcp metric 100"},
		{Route{Dst: netip.MustParsePrefix("10.244.1.0/24"), LinkIndex: 4, Proto: 2},
			"10.244.1.0/24 dev cni0 proto kernel"},
		{Route{Dst: netip.MustParsePrefix("10.9.0.0/16"), Gw: netip.MustParseAddr("10.0.0.1"), Proto: 99},
			"10.9.0.0/16 via 10.0.0.1 proto 99"},
	}
	for _, c := range cases {
		if got := c.r.Format(testNames); got != c.want {
			t.Errorf("Format = %q, want %q", got, c.want)
		}
	}
	r := Route{Dst: netip.MustParsePrefix("10.5.3.0/24"), Gw: netip.MustParseAddr("192.168.1.3"), LinkIndex: 2}
	if got, want := r.String(), "10.5.3.0/24 via 192.168.1.3 dev if2"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestPlanRoutes(t *testing.T) {
	cases := []struct {
		name      string
		desired   []string
		installed []string
		want      []string
	}{
		{
			name:    "empty table gets every desired route",
			desired: []string{"10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft", "10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			want: []string{
				"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
				"replace 10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
			},
		},
		{
			name:      "identical route is left alone",
			desired:   []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			want:      nil,
		},
		{
			name:      "other gateway is replaced",
			desired:   []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{"10.244.2.0/24 via 192.168.1.9 dev eth0 proto weft"},
			want:      []string{"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
		},
		{
			name:      "flannel's untagged route is adopted by replacing it",
			desired:   []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto boot"},
			want:      []string{"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
		},
		{
			name:      "vxlan route at a desired destination is replaced",
			desired:   []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{"10.244.2.0/24 via 10.244.2.0 dev eth1 proto boot onlink"},
			want:      []string{"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
		},
		{
			name:      "unowned route at a desired destination is replaced too",
			desired:   []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{"10.244.2.0/24 dev eth1 proto boot"},
			want:      []string{"replace 10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
		},
		{
			name:    "stale peer route in the network is deleted",
			desired: []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{
				"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
				"10.244.7.0/24 via 192.168.1.7 dev eth0 proto boot",
			},
			want: []string{"del 10.244.7.0/24 via 192.168.1.7 dev eth0 proto boot"},
		},
		{
			name:    "routes outside the network, without gateway, own subnet or the network itself are kept",
			desired: nil,
			installed: []string{
				"default via 192.168.1.254 dev eth0 proto dhcp",
				"10.9.0.0/24 via 192.168.1.5 dev eth0 proto weft",
				"10.244.5.0/24 dev eth1 proto boot",
				"10.244.1.0/24 dev cni0 proto kernel",
				"10.244.1.0/25 via 192.168.1.5 dev eth0",
				"10.244.0.0/16 via 192.168.1.6 dev eth0",
				"192.168.1.0/24 dev eth0 proto kernel",
			},
			want: nil,
		},
		{
			name:    "route with another metric at the same destination is a separate entry",
			desired: []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{
				"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
				"10.244.2.0/24 via 192.168.1.8 dev eth0 proto boot metric 100",
			},
			want: []string{"del 10.244.2.0/24 via 192.168.1.8 dev eth0 proto boot metric 100"},
		},
		{
			name:    "appended duplicate at a desired key is deleted",
			desired: []string{"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft"},
			installed: []string{
				"10.244.2.0/24 via 192.168.1.8 dev eth0 proto boot",
				"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
			},
			want: []string{"del 10.244.2.0/24 via 192.168.1.8 dev eth0 proto boot"},
		},
		{
			name: "mixed: add, replace, keep, delete, sorted by destination",
			desired: []string{
				"10.244.10.0/24 via 192.168.1.10 dev eth0 proto weft",
				"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
				"10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
			},
			installed: []string{
				"10.244.3.0/24 via 192.168.1.33 dev eth0 proto weft",
				"10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft",
				"10.244.9.0/24 via 192.168.1.9 dev eth0 proto weft",
				"10.244.4.0/24 via 192.168.1.4 dev eth0 proto weft",
			},
			want: []string{
				"replace 10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft",
				"replace 10.244.10.0/24 via 192.168.1.10 dev eth0 proto weft",
				"del 10.244.4.0/24 via 192.168.1.4 dev eth0 proto weft",
				"del 10.244.9.0/24 via 192.168.1.9 dev eth0 proto weft",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ops := PlanRoutes(routes(t, c.desired...), routes(t, c.installed...), ownedInNetwork)
			var got []string
			for _, op := range ops {
				got = append(got, op.Format(testNames))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestPlanRoutesPrev(t *testing.T) {
	old := rt(t, "10.244.2.0/24 via 192.168.1.9 dev eth0 proto boot")
	ops := PlanRoutes(routes(t, "10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft", "10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft"),
		[]Route{old}, ownedInNetwork)
	if len(ops) != 2 {
		t.Fatalf("got %d ops, want 2: %v", len(ops), ops)
	}
	if ops[0].Prev != old {
		t.Errorf("replace of an existing key: Prev = %v, want %v", ops[0].Prev, old)
	}
	if ops[1].Prev != (Route{}) {
		t.Errorf("replace of a new key: Prev = %v, want zero", ops[1].Prev)
	}
}

func TestPlanRoutesIdempotent(t *testing.T) {
	desired := routes(t, "10.244.2.0/24 via 192.168.1.2 dev eth0 proto weft", "10.244.3.0/24 via 192.168.1.3 dev eth0 proto weft")
	installed := routes(t, "10.244.3.0/24 via 192.168.1.9 dev eth0", "10.244.8.0/24 via 192.168.1.8 dev eth0", "192.168.1.0/24 dev eth0 proto kernel")
	// Simulate the kernel applying the plan, then plan again.
	for _, op := range PlanRoutes(desired, installed, ownedInNetwork) {
		switch op.Kind {
		case Replace:
			for i, r := range installed {
				if r.key() == op.Route.key() {
					installed = append(installed[:i], installed[i+1:]...)
					break
				}
			}
			installed = append(installed, op.Route)
		case Delete:
			for i, r := range installed {
				if r == op.Route {
					installed = append(installed[:i], installed[i+1:]...)
					break
				}
			}
		}
	}
	if ops := PlanRoutes(desired, installed, ownedInNetwork); len(ops) != 0 {
		t.Errorf("second plan not empty: %v", ops)
	}
}

func TestOpErrorAndResult(t *testing.T) {
	op := Op{Kind: Replace, Route: rt(t, "10.244.2.0/24 via 10.9.0.5 dev eth0 proto weft")}
	e := &OpError{Op: op, Err: errTest}
	if got, want := e.Error(), "replace route 10.244.2.0/24 via 10.9.0.5 dev if2 proto weft: boom"; got != want {
		t.Errorf("Error = %q, want %q", got, want)
	}
	if (Result{}).Err() != nil {
		t.Error("empty Result has an error")
	}
	del := &OpError{Op: Op{Kind: Delete, Route: op.Route}, Err: errTest}
	err := Result{Failed: []*OpError{e, del}}.Err()
	if err == nil || !strings.Contains(err.Error(), "delete route 10.244.2.0/24") {
		t.Errorf("joined error = %v", err)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("boom")
