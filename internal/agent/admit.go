package agent

import (
	"net/netip"

	"github.com/weftnet/weft/internal/admit"
	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/web"
)

// admitter is the watch loop's admission step: it hands the backend only
// the leases package admit accepts, and says when a refusal starts and
// ends, not on every snapshot. Only the watch loop uses it.
type admitter struct {
	in  admit.Input
	own lease.Lease
	// active are the refusals of the last snapshot, by lease and reason:
	// a lease refused for a new reason (the other lease changed) is a new
	// refusal.
	active map[string]admit.Refusal
}

func newAdmitter(cfg *netconf.Config, ownPublicIP netip.Addr, own lease.Lease) *admitter {
	d, _ := backends.Lookup(cfg.BackendType) // waitConfig checked it is there
	return &admitter{
		in:     admit.Input{Config: cfg, Backend: d, OwnPublicIP: ownPublicIP, Memo: admit.NewMemo()},
		own:    own,
		active: map[string]admit.Refusal{},
	}
}

// admitPeers returns the leases of snap the backend may program: the own
// lease and every admitted peer.
func (a *Agent) admitPeers(snap []lease.Lease) []lease.Lease {
	ad := a.adm
	in := ad.in
	in.Own = ad.own
	for _, l := range snap {
		// The store's copy carries what this host published last.
		if l.Key() == ad.own.Key() && l.Attrs.PublicIP == ad.own.Attrs.PublicIP && l.Attrs.PublicIPv6 == ad.own.Attrs.PublicIPv6 {
			in.Own = l
		}
	}
	in.Leases = snap
	res := admit.Decide(in)

	now := make(map[string]admit.Refusal, len(res.Refused))
	count := map[string]int{}
	for _, r := range append(res.Refused, res.RefusedV6...) {
		k := admit.Name(r.Lease) + "\x00" + r.Reason
		now[k] = r
		count[r.Kind]++
		if _, had := ad.active[k]; had {
			continue
		}
		a.deps.Metrics.LeaseRefused(r.Kind)
		msg := "lease refused as a peer; its subnet is not programmed, the live peers stay as they are. Delete the key if it is not a host's"
		if r.IPv6 {
			msg = "lease's IPv6 half refused; its IPv6 subnet is not programmed, its IPv4 subnet is. Fix the host that wrote it"
		}
		a.log.Error(msg, "lease", lease.KeyName(r.Lease.Subnet, r.Lease.IPv6Subnet), "public-ip", backend.PeerName(r.Lease), "reason", r.Kind, "why", r.Reason)
		a.page.add(web.EventRefused, "refused: %s", r.Reason)
	}
	for k, r := range ad.active {
		if _, still := now[k]; still {
			continue
		}
		a.log.Info("lease no longer refused", "lease", lease.KeyName(r.Lease.Subnet, r.Lease.IPv6Subnet), "public-ip", backend.PeerName(r.Lease), "was", r.Reason)
		a.page.add(web.EventRefused, "no longer refused: %s", admit.Name(r.Lease))
	}
	ad.active = now
	a.deps.Metrics.SetLeasesRefused(admit.Kinds, count)
	return res.Admitted
}
