package agent

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/internal/lease"
)

// peersDown says why no peer can be programmed after an Apply that
// returned applyErr, or "" when at least one can (or there is none to
// program). One bad peer among many leaves the host ready: its pods reach
// the others. Every backend names the peer an error is about as "peer P
// (subnet S)" (backend.PeerProblem's callers, and the kernel failures);
// an error naming no subnet is about the whole backend (its device
// missing, the kernel unreadable), and makes the host not ready whatever
// the peers. Pure.
func peersDown(own lease.Lease, leases []lease.Lease, applyErr error) string {
	if applyErr == nil {
		return ""
	}
	var errs []error
	if j, ok := applyErr.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{applyErr}
	}
	peers := map[netip.Prefix]bool{}
	for _, l := range leases {
		if l.Key().Masked() != own.Key().Masked() && l.Attrs.BackendType == own.Attrs.BackendType {
			peers[l.Key().Masked()] = true
		}
	}
	failed := map[netip.Prefix]bool{}
	for _, e := range errs {
		if e == nil {
			continue
		}
		msg := e.Error()
		sn, ok := subnetNamed(msg)
		switch {
		case ok:
			failed[sn.Masked()] = true
		case strings.HasPrefix(msg, "stale entry"):
			// An entry of no current peer: nobody's traffic depends on it.
		default:
			return "the backend failed: " + firstLine(msg)
		}
	}
	n := 0
	for sn := range peers {
		if failed[sn] {
			n++
		}
	}
	if len(peers) == 0 || n < len(peers) {
		return ""
	}
	return fmt.Sprintf("none of the %d peers could be programmed: %s", len(peers), firstLine(errs[0]))
}

// subnetNamed finds the "(subnet S)" in an error message.
func subnetNamed(msg string) (netip.Prefix, bool) {
	const mark = "(subnet "
	i := strings.Index(msg, mark)
	if i < 0 {
		return netip.Prefix{}, false
	}
	rest := msg[i+len(mark):]
	j := strings.IndexByte(rest, ')')
	if j < 0 {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(rest[:j])
	return p, err == nil
}

// firstLine is the first line of the first non-nil error or message.
func firstLine(vs ...any) string {
	for _, v := range vs {
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case error:
			if x == nil {
				continue
			}
			s = x.Error()
		default:
			continue
		}
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		return s
	}
	return ""
}
