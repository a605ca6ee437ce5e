package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
)

// loadHostID settles this host's ID (hostid.go). Without a state
// directory, or when the ID cannot be kept, the agent runs without one:
// its leases are then taken by PublicIP alone, as flannel does.
func (a *Agent) loadHostID() {
	if a.opts.StateDir == "" {
		a.log.Warn("no state directory: this host has no host ID, so another host with the same public IP cannot be told apart")
		return
	}
	id, info, warn, err := loadHostID(a.opts.StateDir, DefaultMachineIDPath, a.now())
	switch {
	case err != nil:
		a.log.Warn("cannot keep a host ID; another host with the same public IP cannot be told apart", "err", err.Error())
		return
	case warn != "":
		a.log.Warn(warn, "host-id", id, "file", a.hostIDPath())
	case info != "":
		a.log.Info(info, "host-id", id, "file", a.hostIDPath())
		a.newHostID = true
	}
	a.hostID = id
}

// noteRefusal reports a refused lease when it starts: not ready with the
// reason, one ERROR line saying what to do, and the metric.
func (a *Agent) noteRefusal(r refusal) {
	a.deps.Health.SetNotReady(r.reason)
	a.log.Error(r.msg, r.args...)
	if !r.misfit {
		a.deps.Metrics.IdentityConflict(metrics.ConflictPublicIP)
	}
}

// identityWatch looks at every snapshot of leases, after Apply, for what
// the data plane alone cannot fix: another host claiming this host's
// PublicIP or backend address (vxlan VTEP MAC), and peers that cannot be
// programmed at all (readiness). Its methods run on the applier goroutine
// of watchLoop only; a nil one does nothing.
type identityWatch struct {
	a        *Agent
	cfg      *netconf.Config
	publicIP netip.Addr
	be       backend.Backend
	own      lease.Lease

	// firstAddr is each peer's backend address in the first snapshot:
	// a peer that published ours already then was there before this
	// host joined, so this host is the newcomer that readdresses.
	firstAddr map[netip.Prefix]string
	dups      map[netip.Prefix]string // live other-host leases with our PublicIP, logged
	clashes   map[netip.Prefix]string // newer peers with our address, logged
	pending   bool                    // a readdress is not republished yet
	peersDown string                  // why no peer can be programmed; "" when some can
	updated   chan lease.Lease        // the own lease after a republish, for renewLoop
}

func newIdentityWatch(a *Agent, cfg *netconf.Config, ext backend.ExternalInterface, be backend.Backend, own lease.Lease) *identityWatch {
	publicIP := ext.PublicIP
	if !cfg.EnableIPv4 {
		publicIP = ext.PublicIPv6 // what names this host, as lease.PublicAddr
	}
	return &identityWatch{a: a, cfg: cfg, publicIP: publicIP, be: be, own: own,
		dups: map[netip.Prefix]string{}, clashes: map[netip.Prefix]string{}, updated: make(chan lease.Lease, 1)}
}

// republished delivers the own lease each time it was published anew.
func (w *identityWatch) republished() <-chan lease.Lease {
	if w == nil {
		return nil
	}
	return w.updated
}

// applied looks at one snapshot after Apply returned applyErr.
func (w *identityWatch) applied(ctx context.Context, leases []lease.Lease, applyErr error) {
	if w == nil || ctx.Err() != nil {
		return
	}
	w.checkPeers(leases, applyErr)
	w.checkPublicIP(leases)
	w.checkAddress(ctx, leases)
}

// checkPeers keeps readiness false while no peer can be programmed.
func (w *identityWatch) checkPeers(leases []lease.Lease, applyErr error) {
	reason := peersDown(w.own, leases, applyErr)
	switch {
	case reason == w.peersDown:
		return
	case reason == "":
		w.a.log.Info("peers can be programmed again; ready")
	case w.peersDown == "":
		// Once when the condition starts; the reason may change while it
		// lasts (peers come and go) without a new line.
		w.a.log.Error("no peer can be programmed; reporting not ready until one can", "reason", reason)
	}
	w.peersDown = reason
	w.a.deps.Health.SetCondition("peers", reason)
}

// checkPublicIP logs, once each time it starts, another live host's lease
// with our PublicIP, or our own key rewritten by such a host (a flannel
// or older weft one takes it over): the two hosts' peers cannot tell them
// apart.
func (w *identityWatch) checkPublicIP(leases []lease.Lease) {
	id := w.a.hostID
	now := map[netip.Prefix]string{}
	for _, l := range leases {
		if id == "" || l.PublicAddr() != w.publicIP || l.Attrs.HostID == "" || l.Attrs.HostID == id {
			continue
		}
		now[l.Key()] = l.Attrs.HostID
		if w.dups[l.Key()] == l.Attrs.HostID {
			continue
		}
		w.a.deps.Metrics.IdentityConflict(metrics.ConflictPublicIP)
		w.a.log.Error(fmt.Sprintf("two hosts use public IP %s: set --public-ip or --iface on one of them", w.publicIP),
			"other-lease", w.a.leaseKey(l.Subnet, l.IPv6Subnet), "other-host-id", l.Attrs.HostID, "host-id", id, "own-lease", w.a.leaseKey(w.own.Subnet, w.own.IPv6Subnet))
	}
	for sn, other := range w.dups {
		if _, ok := now[sn]; !ok {
			w.a.log.Info("the other host with this host's public IP is gone", "other-lease", w.a.leaseKey(sn), "other-host-id", other)
		}
	}
	w.dups = now
}

// checkAddress replaces this host's backend address when a peer that was
// there first publishes it too (a copied state directory), and
// republishes the lease; a peer that took it later is left to do the same.
func (w *identityWatch) checkAddress(ctx context.Context, leases []lease.Lease) {
	rd, ok := w.be.(backend.Readdresser)
	if !ok {
		return
	}
	first := w.firstAddr == nil
	if first {
		w.firstAddr = make(map[netip.Prefix]string, len(leases))
	}
	mine := rd.Address()
	var clash *lease.Lease
	clashes := map[netip.Prefix]string{}
	for i, l := range leases {
		addr := rd.LeaseAddress(l)
		if first {
			w.firstAddr[l.Key()] = addr
		}
		// Leases with our own PublicIP are ours (stale) or checkPublicIP's.
		if l.Key() == w.own.Key() || l.PublicAddr() == w.publicIP || addr == "" || addr != mine {
			continue
		}
		if w.firstAddr[l.Key()] == addr {
			clash = &leases[i]
			break
		}
		clashes[l.Key()] = addr
		if w.clashes[l.Key()] != addr {
			w.a.deps.Metrics.IdentityConflict(metrics.ConflictAddress)
			w.a.log.Warn("a peer that joined after this host publishes this host's backend address (VTEP MAC), probably from a copied state directory; it is not programmed, and a weft peer picks a new address itself (a flannel one does not: delete its flannel.1 and restart it)",
				"peer", backend.PeerName(l), "subnet", l.Subnet, "address", addr)
		}
	}
	w.clashes = clashes
	if clash != nil {
		old, mac, err := rd.Readdress()
		if err != nil {
			w.a.log.Error("a peer publishes this host's backend address (VTEP MAC) and a new one could not be set", "peer", backend.PeerName(*clash), "subnet", clash.Subnet, "err", err.Error())
			if mac == "" {
				return
			}
		} else {
			w.a.deps.Metrics.IdentityConflict(metrics.ConflictAddress)
			w.a.log.Warn("a peer that was there first publishes this host's backend address (VTEP MAC): this host's state directory was probably copied from it with a cloned image; picked a new address and republishing the lease",
				"peer", backend.PeerName(*clash), "subnet", clash.Subnet, "old", old, "new", mac, "state-dir", w.a.opts.StateDir)
		}
		w.pending = true
	}
	if w.pending {
		w.republish(ctx)
	}
}

// republish writes the own lease again with the backend's current data.
// It tries a few times; on failure the next snapshot tries again.
func (w *identityWatch) republish(ctx context.Context) {
	btype, data := w.be.LeaseAttrs()
	attrs := w.own.Attrs
	attrs.BackendType, attrs.BackendData = btype, data
	if w.cfg.EnableIPv6 {
		attrs.BackendV6Data = backend.LeaseV6Data(w.be)
	}
	req := store.AcquireRequest{Attrs: attrs, Previous: w.own.Subnet, PreviousIPv6: w.own.IPv6Subnet}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 && sleep(ctx, time.Second) != nil {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var l lease.Lease
		l, err = w.a.deps.Store.Acquire(actx, w.cfg, req)
		cancel()
		if err != nil {
			continue
		}
		if l.Subnet != w.own.Subnet {
			w.a.log.Error("republishing the lease gave another subnet; this host keeps using its own", "subnet", w.own.Subnet, "got", l.Subnet)
		}
		l.Subnet = w.own.Subnet
		w.own, w.pending = l, false
		w.a.deps.Metrics.LeaseExpires(l.Expiration)
		select {
		case <-w.updated:
		default:
		}
		w.updated <- l
		w.a.log.Info("republished the lease", "subnet", l.Subnet, "backend-data", string(l.Attrs.BackendData))
		return
	}
	w.a.log.Error("cannot republish the lease with the new backend address; retrying on the next change", "subnet", w.own.Subnet, "err", err.Error())
}
