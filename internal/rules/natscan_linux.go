package rules

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netns"
)

// inNetns runs fn with its OS thread in the named network namespace, or
// where it is when name is "". Sockets fn opens stay in that namespace.
func inNetns(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	return netns.Do(name, fn)
}

// scanNAT looks at the NAT in the named network namespace ("" is the
// caller's): every nftables chain (which includes iptables-nft's) over
// netlink, and iptables-legacy's tables in /proc. It reads only, so it
// neither creates tables nor causes nftables notifications.
func scanNAT(netnsName string) (natFound, error) {
	var chains []nftChain
	var legacy [2][]string
	err := inNetns(netnsName, func() error {
		var err error
		if chains, err = dumpChains(); err != nil {
			return err
		}
		// thread-self: the namespace of this (locked) thread, not of the
		// process, which is what /proc/net shows.
		for i, name := range []string{"ip_tables_names", "ip6_tables_names"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if errors.Is(err, os.ErrNotExist) {
				continue // ip_tables not loaded: no legacy tables anywhere
			}
			if err != nil {
				return fmt.Errorf("read iptables-legacy tables: %w", err)
			}
			legacy[i] = strings.Fields(string(b))
		}
		return nil
	})
	if err != nil {
		return natFound{}, fmt.Errorf("look for NAT in the network namespace: %w", err)
	}
	return classifyNAT(chains, legacy), nil
}

// nftablesType is a netlink message type of the nftables subsystem.
func nftablesType(msg int) uint16 { return uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | msg) }

// dumpAttempts bounds the retries of a chain dump that a concurrent
// ruleset change interrupted.
const dumpAttempts = 5

// dumpChains lists every nftables chain of the current namespace. A
// kernel without nf_tables has none.
func dumpChains() ([]nftChain, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind netfilter netlink socket: %w", err)
	}
	// A dump either finishes quickly or the kernel is in trouble; do not
	// hang a resync on it.
	tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("set netlink receive timeout: %w", err)
	}
	buf := make([]byte, 64<<10)
	for attempt := 1; ; attempt++ {
		seq := uint32(attempt)
		if err := unix.Sendto(fd, chainDumpRequest(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("request nftables chains: %w", err)
		}
		var chains []nftChain
		intr := false
		for done := false; !done; {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read nftables chains: %w", err)
			}
			var part []nftChain
			var partIntr bool
			part, done, partIntr, err = parseChainDump(buf[:n], seq)
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, nil // no nf_tables in this kernel
			}
			if err != nil {
				return nil, err
			}
			chains = append(chains, part...)
			intr = intr || partIntr
		}
		if !intr {
			return chains, nil
		}
		if attempt == dumpAttempts {
			return nil, fmt.Errorf("list nftables chains: the ruleset kept changing during %d dumps", attempt)
		}
	}
}

// chainDumpRequest is NFT_MSG_GETCHAIN for all families, as a dump.
func chainDumpRequest(seq uint32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofNfgenmsg)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], nftablesType(unix.NFT_MSG_GETCHAIN))
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	// pid 0: the kernel. nfgenmsg: family unspec (all), version 0, res_id 0.
	b[unix.SizeofNlMsghdr+1] = unix.NFNETLINK_V0
	return b
}

// sizeofNfgenmsg is the size of struct nfgenmsg, which follows the
// netlink header of every nfnetlink message.
const sizeofNfgenmsg = 4

// nlaTypeMask strips the nested and byte-order flags from an attribute type.
const nlaTypeMask = 0x3fff

// parseChainDump parses one datagram of a chain dump: the chains it
// holds, whether it ended the dump, and whether the kernel marked it
// interrupted (the ruleset changed during the dump, so it must be redone).
// Messages of other sequence numbers are ignored. An error message from
// the kernel is returned as its errno.
func parseChainDump(b []byte, seq uint32) (chains []nftChain, done, intr bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, false, false, fmt.Errorf("parse nftables chain dump: bad message length %d of %d bytes", l, len(b))
		}
		typ, flags, mseq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
		body := b[unix.SizeofNlMsghdr:l]
		b = b[min(nlAlign(l), len(b)):]
		if mseq != seq {
			continue
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			intr = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			return chains, true, intr, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return nil, false, false, errors.New("parse nftables chain dump: short error message")
			}
			if errno := -int32(ne.Uint32(body)); errno != 0 {
				return nil, false, false, fmt.Errorf("list nftables chains: %w", unix.Errno(errno))
			}
			return chains, true, intr, nil
		case nftablesType(unix.NFT_MSG_NEWCHAIN):
			c, err := parseChain(body)
			if err != nil {
				return nil, false, false, err
			}
			chains = append(chains, c)
		}
	}
	return chains, false, intr, nil
}

// parseChain reads one NFT_MSG_NEWCHAIN body: nfgenmsg, then attributes.
func parseChain(body []byte) (nftChain, error) {
	if len(body) < sizeofNfgenmsg {
		return nftChain{}, errors.New("parse nftables chain: short message")
	}
	c := nftChain{family: body[0], hook: -1}
	err := walkAttrs(body[sizeofNfgenmsg:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_CHAIN_TABLE:
			c.table = attrString(v)
		case unix.NFTA_CHAIN_NAME:
			c.name = attrString(v)
		case unix.NFTA_CHAIN_TYPE:
			c.typ = attrString(v)
		case unix.NFTA_CHAIN_HOOK:
			return walkAttrs(v, func(typ uint16, v []byte) error {
				if typ == unix.NFTA_HOOK_HOOKNUM && len(v) >= 4 {
					c.hook = int(binary.BigEndian.Uint32(v))
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nftChain{}, fmt.Errorf("parse nftables chain: %w", err)
	}
	return c, nil
}

// walkAttrs calls fn for each netlink attribute in b.
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlAttr {
		l := int(ne.Uint16(b[0:]))
		if l < unix.SizeofNlAttr || l > len(b) {
			return fmt.Errorf("bad attribute length %d of %d bytes", l, len(b))
		}
		if err := fn(ne.Uint16(b[2:])&nlaTypeMask, b[unix.SizeofNlAttr:l]); err != nil {
			return err
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return nil
}

func attrString(v []byte) string { return strings.TrimRight(string(v), "\x00") }

func nlAlign(n int) int { return (n + 3) &^ 3 }

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
	err := inNetns(netnsName, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("open netfilter netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
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
