package lab

import (
	"context"
	"io"
	"net/netip"
)

// ServeSourceEcho starts, inside netns ns, a TCP server on addr:ProbePort
// that answers every connection with the client address it saw: the probe
// behind the lab's "TCP SEEN-SOURCE" column, for tests that add their own
// namespaces (an "internet" host, say). Close stops it.
func ServeSourceEcho(ns string, addr netip.Addr) (io.Closer, error) {
	s, err := startEchoServers([]probeTarget{{Pod: Pod{Name: ns, NS: ns}, Addr: addr}})
	if err != nil {
		return nil, err
	}
	return closerFunc(s.Close), nil
}

// SeenSource connects from netns ns to dst's echo server and returns the
// source address the server saw.
func SeenSource(ctx context.Context, ns string, dst netip.Addr) (netip.Addr, error) {
	return seenSourceFrom(ctx, ns, dst)
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }
