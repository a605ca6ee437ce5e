package kernel

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchRcvBuf is the receive buffer asked for a subscription socket, so a
// burst (a link going down takes every route on it) rarely overflows it.
// When it does overflow the subscription ends, and the contract of the
// Watch functions makes the caller reconcile, so nothing is lost for good.
const watchRcvBuf = 1 << 20

// WatchOptions say where and how a subscription listens.
type WatchOptions struct {
	// Namespace is where to listen; nil means the caller's.
	Namespace *vns.NsHandle
	// RcvBuf is the socket's receive buffer; 0 means 1 MiB. ForceRcvBuf
	// sets it beyond net.core.rmem_max (needs CAP_NET_ADMIN), for callers
	// that must not lose a notification of a large burst.
	RcvBuf      int
	ForceRcvBuf bool
	// OnError, if not nil, receives the reason a subscription ended; it is
	// called from another goroutine, and not for the end that ctx caused.
	OnError func(error)
}

func (o WatchOptions) rcvBuf() int {
	if o.RcvBuf > 0 {
		return o.RcvBuf
	}
	return watchRcvBuf
}

// Every Watch function follows one contract: it reports, from the moment
// it returns, the notifications that convert keeps. The channel closes when
// ctx is done or when the subscription fails (its socket overflowed, say);
// in the second case changes may have been missed, and the caller should
// reconcile and subscribe again. convert sees each notification as soon
// as netlink has parsed it, before anything is queued for the caller (the
// bench stamps notifications there); it must not block.

// WatchRouteUpdates subscribes to route notifications (ip monitor route).
func WatchRouteUpdates[E any](ctx context.Context, o WatchOptions, convert func(netlink.RouteUpdate) (E, bool)) (<-chan E, error) {
	return pump(ctx, "route subscription", o.OnError,
		func(ch chan netlink.RouteUpdate, done chan struct{}, cb func(error)) error {
			return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
				Namespace: o.Namespace, ReceiveBufferSize: o.rcvBuf(), ReceiveBufferForceSize: o.ForceRcvBuf, ErrorCallback: cb,
			})
		}, convert)
}

// WatchNeighUpdates subscribes to neighbour and FDB notifications (ip
// monitor neigh; bridge monitor fdb).
func WatchNeighUpdates[E any](ctx context.Context, o WatchOptions, convert func(netlink.NeighUpdate) (E, bool)) (<-chan E, error) {
	return pump(ctx, "neighbour subscription", o.OnError,
		func(ch chan netlink.NeighUpdate, done chan struct{}, cb func(error)) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
				Namespace: o.Namespace, ReceiveBufferSize: o.rcvBuf(), ReceiveBufferForceSize: o.ForceRcvBuf, ErrorCallback: cb,
			})
		}, convert)
}

// WatchLinkUpdates subscribes to link notifications (ip monitor link).
func WatchLinkUpdates[E any](ctx context.Context, o WatchOptions, convert func(netlink.LinkUpdate) (E, bool)) (<-chan E, error) {
	return pump(ctx, "link subscription", o.OnError,
		func(ch chan netlink.LinkUpdate, done chan struct{}, cb func(error)) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
				Namespace: o.Namespace, ReceiveBufferSize: o.rcvBuf(), ReceiveBufferForceSize: o.ForceRcvBuf, ErrorCallback: cb,
			})
		}, convert)
}

// WatchAddrUpdates subscribes to address notifications (ip monitor address).
func WatchAddrUpdates[E any](ctx context.Context, o WatchOptions, convert func(netlink.AddrUpdate) (E, bool)) (<-chan E, error) {
	return pump(ctx, "address subscription", o.OnError,
		func(ch chan netlink.AddrUpdate, done chan struct{}, cb func(error)) error {
			return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
				Namespace: o.Namespace, ReceiveBufferSize: o.rcvBuf(), ReceiveBufferForceSize: o.ForceRcvBuf, ErrorCallback: cb,
			})
		}, convert)
}

// WatchRoutes reports the main-table unicast routes the kernel adds,
// changes or deletes in namespace ns (nil: the caller's), as `ip monitor
// route` shows them, from the moment it returns. A backend compares what
// it reports with its plan (RouteDrift), so that its own writes, which
// come back as the planned route, call for nothing. Its channel closes as
// the other Watch functions' do.
//
// The kernel sends no per-route notification when it flushes IPv4 routes
// because their device went down or lost its address, so a periodic
// reconcile is still needed beside this.
func WatchRoutes(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan RouteEvent, error) {
	return WatchRouteUpdates(ctx, WatchOptions{Namespace: ns, OnError: onError}, func(u netlink.RouteUpdate) (RouteEvent, bool) {
		if u.Type != unix.RTM_NEWROUTE && u.Type != unix.RTM_DELROUTE {
			return RouteEvent{}, false
		}
		r, ok := FromNetlink(u.Route)
		return RouteEvent{Route: r, Deleted: u.Type == unix.RTM_DELROUTE}, ok
	})
}

// WatchNeighs reports the IPv4 and IPv6 neighbour and the FDB entries the kernel
// adds, changes or deletes in namespace ns (nil: the caller's), as `ip
// monitor neigh` and `bridge monitor fdb` show them, from the moment it
// returns. The kernel also reports entries it resolves and expires on its
// own; callers filter by link and compare with their plan (NeighDrift,
// FDBDrift).
func WatchNeighs(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan NeighEvent, error) {
	return WatchNeighUpdates(ctx, WatchOptions{Namespace: ns, OnError: onError}, func(u netlink.NeighUpdate) (NeighEvent, bool) {
		if (u.Type != unix.RTM_NEWNEIGH && u.Type != unix.RTM_DELNEIGH) || (u.Family != unix.AF_INET && u.Family != unix.AF_INET6 && u.Family != unix.AF_BRIDGE) {
			return NeighEvent{}, false
		}
		e := NeighEvent{
			Deleted:   u.Type == unix.RTM_DELNEIGH,
			LinkIndex: u.LinkIndex,
			FDB:       u.Family == unix.AF_BRIDGE,
			VNI:       u.VNI,
			Permanent: u.State&netlink.NUD_PERMANENT != 0,
		}
		if a, ok := netip.AddrFromSlice(u.IP); ok {
			e.IP = a.Unmap()
		}
		e.MAC, _ = MACFrom(u.HardwareAddr)
		return e, true
	})
}

// WatchLinks reports every link change in namespace ns (nil: the caller's),
// as `ip monitor link` shows them, from the moment it returns.
func WatchLinks(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan LinkEvent, error) {
	return WatchLinkUpdates(ctx, WatchOptions{Namespace: ns, OnError: onError}, func(u netlink.LinkUpdate) (LinkEvent, bool) {
		e := LinkEvent{Index: int(u.Index), Deleted: u.Header.Type == unix.RTM_DELLINK}
		if u.Link != nil {
			e.Name = u.Link.Attrs().Name
		}
		e.Up = !e.Deleted && u.Flags&unix.IFF_UP != 0
		return e, true
	})
}

// WatchAddrs reports every address added or removed in namespace ns (nil:
// the caller's), as `ip monitor address` shows them, from the moment it
// returns.
func WatchAddrs(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan AddrEvent, error) {
	return WatchAddrUpdates(ctx, WatchOptions{Namespace: ns, OnError: onError}, func(u netlink.AddrUpdate) (AddrEvent, bool) {
		e := AddrEvent{LinkIndex: u.LinkIndex, Added: u.NewAddr}
		if a, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok {
			ones, _ := u.LinkAddress.Mask.Size()
			e.Prefix = netip.PrefixFrom(a.Unmap(), ones)
		}
		return e, true
	})
}

// pump runs a netlink subscription and forwards what convert keeps, until
// ctx is done or the subscription ends. what names it in errors. It is the
// one subscribe-and-drain loop behind every Watch function.
func pump[U, E any](ctx context.Context, what string, onError func(error),
	subscribe func(ch chan U, done chan struct{}, cb func(error)) error,
	convert func(U) (E, bool),
) (<-chan E, error) {
	updates := make(chan U, 64)
	done := make(chan struct{})
	cb := func(err error) {
		// Closing the socket on ctx done ends the reader with an error
		// too; that one is no news.
		if onError != nil && ctx.Err() == nil {
			onError(fmt.Errorf("%s: %w", what, err))
		}
	}
	if err := subscribe(updates, done, cb); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make(chan E, 16)
	go func() {
		defer close(out)
		// Closing done closes the socket, which ends netlink's reader; it
		// may be blocked sending on updates, so drain until it closes it.
		defer func() {
			close(done)
			for range updates {
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				e, keep := convert(u)
				if !keep {
					continue
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
