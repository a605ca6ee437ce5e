package kerneltest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/kernel"
)

// Netlink is the fake. Its zero value is not usable; call New. All
// methods may be called concurrently.
type Netlink struct {
	mu       sync.Mutex
	calls    []string
	fail     map[string]error // call prefix → error every matching call returns
	links    map[int]netlink.Link
	next     int
	addrs    map[int][]netlink.Addr
	neighs   []netlink.Neigh // AF_INET neighbours and AF_BRIDGE FDB entries
	routes   []netlink.Route
	routeGet func(net.IP) ([]netlink.Route, error)
}

var _ kernel.Handle = (*Netlink)(nil)

// New returns an empty kernel: no links, no entries.
func New() *Netlink {
	return &Netlink{
		fail:  map[string]error{},
		links: map[int]netlink.Link{},
		addrs: map[int][]netlink.Addr{},
		next:  1,
	}
}

// AddDevice adds an up link (a dummy) without recording a call, for a test's
// starting state: the external interface, say. It returns its index.
func (f *Netlink) AddDevice(name string, mtu int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, Flags: net.FlagUp}}
	return f.addLocked(l)
}

func (f *Netlink) addLocked(l netlink.Link) int {
	l.Attrs().Index = f.next
	f.next++
	f.links[l.Attrs().Index] = l
	return l.Attrs().Index
}

// Calls returns the calls made so far, in order, in `ip`-like words
// ("route replace 10.5.2.0/24 via 10.5.2.0 dev flannel.1 onlink"); a call
// that failed ends in " !" and the error.
func (f *Netlink) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the calls made so far.
func (f *Netlink) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Fail makes every later call whose record starts with prefix ("route
// replace 10.5.3.0/24", "fdb list") fail with err; a nil err stops that.
func (f *Netlink) Fail(prefix string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, prefix)
		return
	}
	f.fail[prefix] = err
}

// SetRouteGet answers `ip route get` with fn; without it every lookup
// fails with ENETUNREACH.
func (f *Netlink) SetRouteGet(fn func(net.IP) ([]netlink.Route, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routeGet = fn
}

// call records one call and returns the error a test asked it to fail with.
func (f *Netlink) call(format string, args ...any) error {
	rec := fmt.Sprintf(format, args...)
	for prefix, err := range f.fail {
		if strings.HasPrefix(rec, prefix) {
			f.calls = append(f.calls, rec+" ! "+err.Error())
			return err
		}
	}
	f.calls = append(f.calls, rec)
	return nil
}

func (f *Netlink) name(index int) string {
	if l, ok := f.links[index]; ok {
		return l.Attrs().Name
	}
	return fmt.Sprintf("if%d", index)
}

// Links.

func (f *Netlink) byName(name string) netlink.Link {
	for _, l := range f.links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

// copyLink returns a copy that the caller may change without changing the
// fake, as a real dump would.
func copyLink(l netlink.Link) netlink.Link {
	switch v := l.(type) {
	case *netlink.Vxlan:
		c := *v
		c.HardwareAddr = slices.Clone(v.HardwareAddr)
		return &c
	case *netlink.Dummy:
		c := *v
		c.HardwareAddr = slices.Clone(v.HardwareAddr)
		return &c
	case *netlink.Tuntap:
		c := *v
		return &c
	}
	g := &netlink.GenericLink{LinkAttrs: *l.Attrs(), LinkType: l.Type()}
	return g
}

// LinkByName is ip link show NAME. A missing link is a
// netlink.LinkNotFoundError, whose message is empty in this fake.
func (f *Netlink) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("link get %s", name); err != nil {
		return nil, err
	}
	if l := f.byName(name); l != nil {
		return copyLink(l), nil
	}
	return nil, netlink.LinkNotFoundError{}
}

// LinkByIndex is ip link show by index.
func (f *Netlink) LinkByIndex(index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("link get index %d", index); err != nil {
		return nil, err
	}
	if l, ok := f.links[index]; ok {
		return copyLink(l), nil
	}
	return nil, netlink.LinkNotFoundError{}
}

// LinkAdd is ip link add. The new link is down, as the kernel makes it.
func (f *Netlink) LinkAdd(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := link.Attrs().Name
	if err := f.call("link add %s type %s", name, link.Type()); err != nil {
		return err
	}
	if f.byName(name) != nil {
		return unix.EEXIST
	}
	c := copyLink(link)
	c.Attrs().Flags &^= net.FlagUp
	if c.Attrs().HardwareAddr == nil {
		c.Attrs().HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, byte(f.next)}
	}
	f.addLocked(c)
	return nil
}

// LinkDel is ip link del; the link's addresses, neighbours, FDB entries and
// routes go with it.
func (f *Netlink) LinkDel(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("link del %s", link.Attrs().Name); err != nil {
		return err
	}
	return f.removeLinkLocked(link.Attrs().Index)
}

func (f *Netlink) removeLinkLocked(index int) error {
	if _, ok := f.links[index]; !ok {
		return unix.ENODEV
	}
	delete(f.links, index)
	delete(f.addrs, index)
	f.neighs = slices.DeleteFunc(f.neighs, func(n netlink.Neigh) bool { return n.LinkIndex == index })
	f.routes = slices.DeleteFunc(f.routes, func(r netlink.Route) bool { return r.LinkIndex == index })
	return nil
}

func (f *Netlink) setLink(link netlink.Link, what string, set func(*netlink.LinkAttrs)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("link set %s %s", link.Attrs().Name, what); err != nil {
		return err
	}
	l, ok := f.links[link.Attrs().Index]
	if !ok {
		return unix.ENODEV
	}
	set(l.Attrs())
	return nil
}

// LinkSetMTU is ip link set DEV mtu MTU.
func (f *Netlink) LinkSetMTU(link netlink.Link, mtu int) error {
	return f.setLink(link, fmt.Sprintf("mtu %d", mtu), func(a *netlink.LinkAttrs) { a.MTU = mtu })
}

// LinkSetHardwareAddr is ip link set DEV address MAC.
func (f *Netlink) LinkSetHardwareAddr(link netlink.Link, hw net.HardwareAddr) error {
	return f.setLink(link, "address "+hw.String(), func(a *netlink.LinkAttrs) { a.HardwareAddr = slices.Clone(hw) })
}

// LinkSetUp is ip link set DEV up.
func (f *Netlink) LinkSetUp(link netlink.Link) error {
	return f.setLink(link, "up", func(a *netlink.LinkAttrs) { a.Flags |= net.FlagUp })
}

// Addresses.

// AddrList is ip addr show dev DEV; family is ignored (the fake holds what
// it is given).
func (f *Netlink) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("addr list dev %s", link.Attrs().Name); err != nil {
		return nil, err
	}
	return slices.Clone(f.addrs[link.Attrs().Index]), nil
}

// AddrAdd is ip addr add ADDR dev DEV.
func (f *Netlink) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("addr add %s dev %s", addr.IPNet, link.Attrs().Name); err != nil {
		return err
	}
	i := link.Attrs().Index
	for _, a := range f.addrs[i] {
		if a.IPNet.String() == addr.IPNet.String() {
			return unix.EEXIST
		}
	}
	f.addrs[i] = append(f.addrs[i], netlink.Addr{IPNet: &net.IPNet{IP: addr.IP, Mask: addr.Mask}, LinkIndex: i})
	return nil
}

// AddrDel is ip addr del ADDR dev DEV.
func (f *Netlink) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("addr del %s dev %s", addr.IPNet, link.Attrs().Name); err != nil {
		return err
	}
	i := link.Attrs().Index
	n := len(f.addrs[i])
	f.addrs[i] = slices.DeleteFunc(f.addrs[i], func(a netlink.Addr) bool { return a.IPNet.String() == addr.IPNet.String() })
	if len(f.addrs[i]) == n {
		return unix.EADDRNOTAVAIL
	}
	return nil
}

// Neighbours and FDB entries.

func isFDB(n *netlink.Neigh) bool { return n.Family == unix.AF_BRIDGE }

// sameNeigh is the kernel's key: the address for a neighbour, the MAC for
// an FDB entry (whose remote a replace overwrites), on one link.
func sameNeigh(a, b *netlink.Neigh) bool {
	if a.LinkIndex != b.LinkIndex || isFDB(a) != isFDB(b) {
		return false
	}
	if isFDB(a) {
		return a.HardwareAddr.String() == b.HardwareAddr.String()
	}
	return a.IP.Equal(b.IP)
}

func (f *Netlink) describeNeigh(verb string, n *netlink.Neigh) string {
	if isFDB(n) {
		return fmt.Sprintf("fdb %s %s dev %s dst %s", verb, n.HardwareAddr, f.name(n.LinkIndex), n.IP)
	}
	s := fmt.Sprintf("neigh %s %s", verb, n.IP)
	if verb != "del" {
		s += " lladdr " + n.HardwareAddr.String()
	}
	return s + " dev " + f.name(n.LinkIndex)
}

// NeighList is ip neigh show dev DEV (AF_INET, AF_INET6, or AF_UNSPEC for
// both) or bridge fdb show dev DEV (AF_BRIDGE).
func (f *Netlink) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	what := "neigh"
	if family == unix.AF_BRIDGE {
		what = "fdb"
	}
	if err := f.call("%s list dev %s", what, f.name(linkIndex)); err != nil {
		return nil, err
	}
	var out []netlink.Neigh
	for _, n := range f.neighs {
		unspec := family == unix.AF_UNSPEC && n.Family != unix.AF_BRIDGE
		if n.LinkIndex == linkIndex && (n.Family == family || unspec) {
			out = append(out, n)
		}
	}
	return out, nil
}

// NeighSet is ip neigh replace, or bridge fdb replace.
func (f *Netlink) NeighSet(neigh *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("%s", f.describeNeigh("replace", neigh)); err != nil {
		return err
	}
	if _, ok := f.links[neigh.LinkIndex]; !ok {
		return unix.ENODEV
	}
	c := *neigh
	c.IP, c.HardwareAddr = slices.Clone(neigh.IP), slices.Clone(neigh.HardwareAddr)
	if i := slices.IndexFunc(f.neighs, func(n netlink.Neigh) bool { return sameNeigh(&n, neigh) }); i >= 0 {
		f.neighs[i] = c
	} else {
		f.neighs = append(f.neighs, c)
	}
	return nil
}

// NeighDel is ip neigh del, or bridge fdb del.
func (f *Netlink) NeighDel(neigh *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("%s", f.describeNeigh("del", neigh)); err != nil {
		return err
	}
	n := len(f.neighs)
	f.neighs = slices.DeleteFunc(f.neighs, func(n netlink.Neigh) bool { return sameNeigh(&n, neigh) })
	if len(f.neighs) == n {
		return unix.ENOENT
	}
	return nil
}

// Routes.

func (f *Netlink) describeRoute(verb string, r *netlink.Route) string {
	s := fmt.Sprintf("route %s %s", verb, r.Dst)
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += " dev " + f.name(r.LinkIndex)
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		s += " onlink"
	}
	if r.Priority != 0 {
		s += fmt.Sprintf(" metric %d", r.Priority)
	}
	return s
}

func sameRoute(a, b *netlink.Route) bool {
	return a.Dst.String() == b.Dst.String() && a.Priority == b.Priority
}

// RouteListFiltered is ip route show table main; the filter is ignored,
// since the fake holds only main-table routes.
func (f *Netlink) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("route list"); err != nil {
		return nil, err
	}
	return slices.Clone(f.routes), nil
}

// RouteReplace is ip route replace.
func (f *Netlink) RouteReplace(route *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("%s", f.describeRoute("replace", route)); err != nil {
		return err
	}
	if _, ok := f.links[route.LinkIndex]; !ok {
		return unix.ENODEV
	}
	c := *route
	c.Table, c.Type = unix.RT_TABLE_MAIN, unix.RTN_UNICAST
	if i := slices.IndexFunc(f.routes, func(r netlink.Route) bool { return sameRoute(&r, route) }); i >= 0 {
		f.routes[i] = c
	} else {
		f.routes = append(f.routes, c)
	}
	return nil
}

// RouteDel is ip route del.
func (f *Netlink) RouteDel(route *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("%s", f.describeRoute("del", route)); err != nil {
		return err
	}
	n := len(f.routes)
	f.routes = slices.DeleteFunc(f.routes, func(r netlink.Route) bool { return sameRoute(&r, route) })
	if len(f.routes) == n {
		return unix.ESRCH
	}
	return nil
}

// RouteGet is ip route get ADDR, answered by SetRouteGet's function.
func (f *Netlink) RouteGet(dst net.IP) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("route get %s", dst); err != nil {
		return nil, err
	}
	if f.routeGet == nil {
		return nil, unix.ENETUNREACH
	}
	return f.routeGet(dst)
}

// Someone else's changes: these simulate `ip ... del` behind the backend's
// back, and are not recorded as calls. Each reports whether there was
// anything to delete.

// DeleteRoute removes the routes to dst.
func (f *Netlink) DeleteRoute(dst netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.routes)
	f.routes = slices.DeleteFunc(f.routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == dst.String() })
	return len(f.routes) < n
}

// DeleteNeigh removes the neighbour entries of ip.
func (f *Netlink) DeleteNeigh(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.neighs)
	f.neighs = slices.DeleteFunc(f.neighs, func(e netlink.Neigh) bool { return !isFDB(&e) && e.IP.Equal(ip.AsSlice()) })
	return len(f.neighs) < n
}

// DeleteFDB removes the FDB entries of mac.
func (f *Netlink) DeleteFDB(mac kernel.MAC) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.neighs)
	f.neighs = slices.DeleteFunc(f.neighs, func(e netlink.Neigh) bool { return isFDB(&e) && e.HardwareAddr.String() == mac.String() })
	return len(f.neighs) < n
}

// DeleteLink removes the link called name, with its entries.
func (f *Netlink) DeleteLink(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byName(name)
	return l != nil && f.removeLinkLocked(l.Attrs().Index) == nil
}

// State renders what the fake holds, one entry a line in `ip`-like words,
// sorted: "route 10.5.2.0/24 via 10.5.2.0 dev flannel.1 onlink", "neigh
// 10.5.2.0 lladdr ... dev flannel.1", "fdb ... dev flannel.1 dst ...",
// "addr 10.5.1.0/32 dev flannel.1", "link flannel.1 mtu 1450 up".
func (f *Netlink) State() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.links {
		a := l.Attrs()
		s := fmt.Sprintf("link %s mtu %d address %s", a.Name, a.MTU, a.HardwareAddr)
		if a.Flags&net.FlagUp != 0 {
			s += " up"
		}
		out = append(out, s)
		for _, ad := range f.addrs[a.Index] {
			out = append(out, fmt.Sprintf("addr %s dev %s", ad.IPNet, a.Name))
		}
	}
	for _, n := range f.neighs {
		out = append(out, strings.Replace(f.describeNeigh("", &n), "  ", " ", 1))
	}
	for _, r := range f.routes {
		out = append(out, strings.Replace(f.describeRoute("", &r), "  ", " ", 1))
	}
	slices.Sort(out)
	return out
}

// ErrInjected is a convenient error for Fail.
var ErrInjected = errors.New("injected failure")
