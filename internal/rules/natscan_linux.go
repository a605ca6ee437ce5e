package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netns"
)

// scanNAT looks at the NAT in the named network namespace ("" is the
// caller's): every nftables chain (which includes iptables-nft's) over
// netlink, and iptables-legacy's tables in /proc. It reads only, so it
// neither creates tables nor causes nftables notifications.
func scanNAT(netnsName string) (natFound, error) {
	var chains []nftChain
	var legacy [2][]string
	look := func() error {
		var err error
		if chains, err = dumpChains(); err != nil {
			return err
		}
		legacy, err = readLegacyTables()
		return err
	}
	if err := netns.Do(netnsName, look); err != nil {
		return natFound{}, fmt.Errorf("look for NAT in the network namespace: %w", err)
	}
	return classifyNAT(chains, legacy), nil
}

// legacyTables names the iptables-legacy tables of the named namespace
// ("" is the caller's), per family, without creating any.
func legacyTables(netnsName string) ([2][]string, error) {
	var names [2][]string
	err := netns.Do(netnsName, func() error {
		var err error
		names, err = readLegacyTables()
		return err
	})
	return names, err
}

// readLegacyTables reads the iptables-legacy table names of this thread's
// namespace, per family. thread-self: the namespace of this (locked)
// thread, not of the process, which is what /proc/net shows.
func readLegacyTables() ([2][]string, error) {
	var names [2][]string
	for i, name := range []string{"ip_tables_names", "ip6_tables_names"} {
		b, err := os.ReadFile("/proc/thread-self/net/" + name)
		if errors.Is(err, os.ErrNotExist) {
			continue // ip_tables not loaded: no legacy tables anywhere
		}
		if err != nil {
			return names, fmt.Errorf("read iptables-legacy tables: %w", err)
		}
		names[i] = strings.Fields(string(b))
	}
	return names, nil
}

// dumpChains lists every nftables chain of the current namespace over
// netlink (google/nftables; a dump, so read-only). A kernel without
// nf_tables has none. The library does not report a dump that a
// concurrent change interrupted; the change itself is announced to the
// watch, whose resync looks again.
func dumpChains() ([]nftChain, error) {
	c, err := gnft.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	list, err := c.ListChains()
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	chains := make([]nftChain, 0, len(list))
	for _, ch := range list {
		nc := nftChain{name: ch.Name, typ: string(ch.Type), hook: -1}
		if ch.Table != nil {
			nc.family, nc.table = uint8(ch.Table.Family), ch.Table.Name
		}
		if ch.Hooknum != nil {
			nc.hook = int(*ch.Hooknum)
		} else {
			nc.typ = ""
		}
		chains = append(chains, nc)
	}
	return chains, nil
}

// nftEvents is a subscription to the nftables change notifications of one
// network namespace (NFNLGRP_NFTABLES). Every committed change, by nft,
// iptables-nft or any other nftables client, is announced there;
// iptables-legacy changes are not.
type nftEvents struct {
	f *os.File
}

// subscribeNFT opens the subscription in the named namespace ("" is the
// caller's).
func subscribeNFT(netnsName string) (*nftEvents, error) {
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("open netfilter netlink socket: %w", err)
		}
		return nil
	}
	if err := netns.Do(netnsName, open); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("join the nftables notification group: %w", err)
	}
	// Non-blocking, so os.File puts it in the runtime's poller and Close
	// can interrupt a pending read.
	return &nftEvents{f: os.NewFile(uintptr(fd), "nftables-notifications")}, nil
}

// wait blocks until at least one notification arrived and drains what
// else is queued, so a burst counts once. A receive queue overflow
// (ENOBUFS: notifications were lost) counts as a notification. It returns
// an error when the subscription is closed or broken.
func (e *nftEvents) wait(buf []byte) error {
	rc, err := e.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("nftables notifications: %w", err)
	}
	got := false
	for {
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			_, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			// Once something arrived, do not wait for more.
			return got || !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			return fmt.Errorf("read nftables notifications: %w", err)
		}
		switch {
		case rerr == nil || errors.Is(rerr, unix.ENOBUFS):
			got = true
		case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR):
			if got {
				return nil
			}
		default:
			return fmt.Errorf("read nftables notifications: %w", rerr)
		}
	}
}

func (e *nftEvents) close() { _ = e.f.Close() }

// watchNFT delivers a signal on the returned channel (never blocking:
// signals coalesce) after nftables changes in the namespace, until ctx
// ends; the channel is closed then, or earlier if the subscription breaks
// (logged once). A failure to subscribe is returned.
func watchNFT(ctx context.Context, netnsName string, log *slog.Logger) (<-chan struct{}, error) {
	ev, err := subscribeNFT(netnsName)
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, ev.close)
	go func() {
		defer close(ch)
		defer stop()
		defer ev.close()
		buf := make([]byte, 64<<10)
		for {
			if err := ev.wait(buf); err != nil {
				if ctx.Err() == nil {
					log.Warn("nftables notifications stopped; traffic rules are checked on the resync timer only", "err", err)
				}
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, nil
}
