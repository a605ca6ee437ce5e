package kernel

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// WatchNeighDeletions reports the neighbour and FDB entries the kernel
// deletes in namespace ns (nil: the caller's), as `ip monitor neigh` shows
// them ("Deleted ..."), from the moment it returns. The kernel also reports
// entries it expires on its own; callers filter by link and Permanent.
//
// The channel is closed when ctx is done or the subscription fails; in the
// second case deletions may have been missed, and the caller should
// reconcile and subscribe again. onError, if not nil, receives the reason
// from another goroutine.
func WatchNeighDeletions(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan DeletedNeigh, error) {
	return pump(ctx, "neighbour subscription", onError,
		func(ch chan netlink.NeighUpdate, done chan struct{}, cb func(error)) error {
			return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
				Namespace: ns, ReceiveBufferSize: watchRcvBuf, ErrorCallback: cb,
			})
		},
		func(u netlink.NeighUpdate) (DeletedNeigh, bool) {
			if u.Type != unix.RTM_DELNEIGH {
				return DeletedNeigh{}, false
			}
			d := DeletedNeigh{
				LinkIndex: u.LinkIndex,
				FDB:       u.Family == unix.AF_BRIDGE,
				Permanent: u.State&netlink.NUD_PERMANENT != 0,
			}
			if a, ok := netip.AddrFromSlice(u.IP); ok {
				d.IP = a.Unmap()
			}
			d.MAC, _ = MACFrom(u.HardwareAddr)
			return d, true
		})
}

// WatchLinks reports every link change in namespace ns (nil: the caller's),
// as `ip monitor link` shows them, from the moment it returns. Its channel
// closes as WatchNeighDeletions's does.
func WatchLinks(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan LinkEvent, error) {
	return pump(ctx, "link subscription", onError,
		func(ch chan netlink.LinkUpdate, done chan struct{}, cb func(error)) error {
			return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
				Namespace: ns, ReceiveBufferSize: watchRcvBuf, ErrorCallback: cb,
			})
		},
		func(u netlink.LinkUpdate) (LinkEvent, bool) {
			e := LinkEvent{Index: int(u.Index), Deleted: u.Header.Type == unix.RTM_DELLINK}
			if u.Link != nil {
				e.Name = u.Link.Attrs().Name
			}
			e.Up = !e.Deleted && u.Flags&unix.IFF_UP != 0
			return e, true
		})
}

// pump runs a netlink subscription and forwards what convert keeps, until
// ctx is done or the subscription ends. what names it in errors.
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
