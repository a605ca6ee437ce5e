package backend

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeGetter answers ip route get from a table of routes by destination.
type routeGetter map[string][]netlink.Route

func (g routeGetter) RouteGet(dst net.IP) ([]netlink.Route, error) {
	rs, ok := g[dst.String()]
	if !ok {
		return nil, errors.New("network is unreachable")
	}
	return rs, nil
}

func TestDirectLink(t *testing.T) {
	unicast := func(link int, gw string) netlink.Route {
		return netlink.Route{Type: unix.RTN_UNICAST, LinkIndex: link, Gw: net.ParseIP(gw)}
	}
	g := routeGetter{
		"10.0.0.2": {unicast(2, "")},
		"10.0.0.3": {unicast(2, "10.0.0.1")},
		"10.0.0.4": {unicast(2, ""), unicast(3, "")},
		"10.0.0.5": {unicast(5, "")},
		"10.0.0.6": {{Type: unix.RTN_LOCAL, LinkIndex: 1}},
		"10.0.0.7": {unicast(0, "")},
		"10.0.0.8": {},
	}
	for ip, want := range map[string]int{
		"10.0.0.2": 2, // on the segment
		"10.0.0.3": 0, // behind a router
		"10.0.0.4": 0, // a multipath answer is not one link
		"10.0.0.5": 0, // through the overlay itself
		"10.0.0.6": 0, // this host
		"10.0.0.7": 0, // no link
		"10.0.0.8": 0, // no route
		"10.0.0.9": 0, // the lookup failed
	} {
		if got := DirectLink(g, netip.MustParseAddr(ip), 5); got != want {
			t.Errorf("DirectLink(%s) = %d, want %d", ip, got, want)
		}
	}
}
