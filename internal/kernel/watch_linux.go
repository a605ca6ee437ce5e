package kernel

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchRcvBuf is the receive buffer asked for the subscription socket, so a
// burst (a link going down takes every route on it) rarely overflows it.
// When it does overflow the subscription ends, and the contract of
// WatchDeletions makes the caller reconcile, so nothing is lost for good.
const watchRcvBuf = 1 << 20

// WatchDeletions reports the main-table unicast routes the kernel deletes
// in namespace ns (nil: the caller's), as `ip monitor route` shows them
// ("Deleted 10.5.3.0/24 via ..."), from the moment it returns.
//
// The channel is closed when ctx is done or when the subscription fails
// (the socket overflowed, say). In the second case deletions may have been
// missed: the caller should reconcile and subscribe again. onError, if not
// nil, receives the reason; it is called from another goroutine.
//
// The kernel sends no per-route notification when it flushes IPv4 routes
// because their device went down or lost its address, so a periodic
// reconcile is still needed beside this.
func WatchDeletions(ctx context.Context, ns *vns.NsHandle, onError func(error)) (<-chan Route, error) {
	updates := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	opts := netlink.RouteSubscribeOptions{
		Namespace:         ns,
		ReceiveBufferSize: watchRcvBuf,
		ErrorCallback: func(err error) {
			// Closing the socket on ctx done ends the reader with an
			// error too; that one is no news.
			if onError != nil && ctx.Err() == nil {
				onError(fmt.Errorf("route subscription: %w", err))
			}
		},
	}
	if err := netlink.RouteSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("subscribe to route changes: %w", err)
	}

	out := make(chan Route, 16)
	go func() {
		defer close(out)
		// Closing done closes the socket, which ends netlink's reader; it
		// may be blocked sending on updates, so drain until it has closed it.
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
				if u.Type != unix.RTM_DELROUTE {
					continue
				}
				r, ok := FromNetlink(u.Route)
				if !ok {
					continue
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
