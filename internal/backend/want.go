package backend

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/kernel"
)

// Kinds of Want.
const (
	KindRoute  = "route"
	KindNeigh  = "neigh"
	KindFDB    = "fdb"
	KindDevice = "device"
	KindAddr   = "addr"
)

// Want is one kernel entry a backend asks of this host, named by device
// rather than by ifindex so that `weft status` can look for it in any
// snapshot. Which fields count depends on Kind:
//
//	route   Dst, Gw (zero: directly connected), Dev ("" matches any), OnLink
//	neigh   IP, MAC, Dev; always PERMANENT
//	fdb     MAC, IP (the remote, "dst"), Dev; always permanent
//	device  Dev, MTU (0: any), MAC (zero: any), and up
//	addr    Dst (the address with its prefix length) on Dev
type Want struct {
	Kind   string
	Dst    netip.Prefix
	Gw     netip.Addr
	Dev    string
	OnLink bool
	IP     netip.Addr
	MAC    kernel.MAC
	MTU    int
}

// String renders w as iproute2 shows such an entry (ip route, ip neigh,
// bridge fdb, ip link, ip addr), so an operator can grep for it.
func (w Want) String() string {
	switch w.Kind {
	case KindRoute:
		var b strings.Builder
		b.WriteString(w.Dst.String())
		if w.Gw.IsValid() {
			b.WriteString(" via " + w.Gw.String())
		}
		if w.Dev != "" {
			b.WriteString(" dev " + w.Dev)
		}
		if w.OnLink {
			b.WriteString(" onlink")
		}
		return b.String()
	case KindNeigh:
		return fmt.Sprintf("%s dev %s lladdr %s PERMANENT", w.IP, w.Dev, w.MAC)
	case KindFDB:
		return fmt.Sprintf("%s dev %s dst %s self permanent", w.MAC, w.Dev, w.IP)
	case KindDevice:
		return FormatDevice(w.Dev, w.MTU, w.MAC, true)
	case KindAddr:
		return fmt.Sprintf("%s dev %s", w.Dst, w.Dev)
	}
	return w.Kind + "?"
}

// FormatDevice renders a device as `ip link` shows the parts status
// compares: "flannel.1 mtu 1450 lladdr aa:bb:cc:dd:ee:ff up". A zero MTU or
// MAC is left out.
func FormatDevice(dev string, mtu int, mac kernel.MAC, up bool) string {
	var b strings.Builder
	b.WriteString(dev)
	if mtu != 0 {
		b.WriteString(" mtu " + strconv.Itoa(mtu))
	}
	if !mac.IsZero() {
		b.WriteString(" lladdr " + mac.String())
	}
	if up {
		b.WriteString(" up")
	} else {
		b.WriteString(" down")
	}
	return b.String()
}

// EntryWants converts a plan's kernel entries to Wants, naming links by names
// (an index it lacks becomes "", which matches any device). Routes,
// neighbours and FDB entries keep their order, in that sequence.
func EntryWants(names map[int]string, routes []kernel.Route, neighs []kernel.Neigh, fdbs []kernel.FDB) []Want {
	out := make([]Want, 0, len(routes)+len(neighs)+len(fdbs))
	for _, r := range routes {
		out = append(out, Want{Kind: KindRoute, Dst: r.Dst, Gw: r.Gw, Dev: names[r.LinkIndex], OnLink: r.OnLink})
	}
	for _, n := range neighs {
		out = append(out, Want{Kind: KindNeigh, IP: n.IP, MAC: n.MAC, Dev: names[n.LinkIndex]})
	}
	for _, f := range fdbs {
		out = append(out, Want{Kind: KindFDB, MAC: f.MAC, IP: f.Dst, Dev: names[f.LinkIndex]})
	}
	return out
}
