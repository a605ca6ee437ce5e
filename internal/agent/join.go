package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"time"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/subnetenv"
)

// errConfigChanged ends a refused acquire when the network config changed
// meanwhile: the backend was built from the old one, so join starts over.
var errConfigChanged = errors.New("the network config changed while the lease was refused")

// A refused acquire waits: for a config that no longer fits, until the
// config changes, re-reading only the config key every configPoll (a
// rolling restart under a mistaken config must not have every host list
// every lease every few seconds); for another host's lease with our
// PublicIP, it tries again after refusedRetry, doubling up to
// refusedRetryMax, so that it proceeds soon after that lease goes.
const (
	configPoll      = 2 * time.Second
	refusedRetry    = 2 * time.Second
	refusedRetryMax = 10 * time.Second
	// refusedRetryMisfit: see waitRefused.
	refusedRetryMisfit = 30 * time.Second
)

// join reads the network config, builds the backend and acquires the
// lease. A lease refused because the config no longer fits this host's
// subnet waits for the config to change and then starts over from the new
// config, since the backend depends on it.
func (a *Agent) join(ctx context.Context, ext backend.ExternalInterface) (*netconf.Config, backend.Backend, lease.Lease, error) {
	for {
		a.deps.Health.SetNotReady("waiting for the network config")
		cfg, err := a.waitConfig(ctx)
		if err != nil {
			return nil, nil, lease.Lease{}, err
		}
		args := []any{"network", cfg.Network, "subnet-len", cfg.SubnetLen, "backend", cfg.BackendType}
		if cfg.EnableIPv6 {
			args = append(args, "ipv6-network", cfg.IPv6Network, "ipv6-subnet-len", cfg.IPv6SubnetLen, "families", cfg.Families())
		}
		a.log.Info("network config", args...)
		if err := checkFamilies(cfg, ext, store.LeasesIPv6Only(a.deps.Store)); err != nil {
			return nil, nil, lease.Lease{}, err
		}
		a.deps.Metrics.SetBackend(cfg.BackendType)
		a.page.setConfig(cfg)

		factory := a.deps.Backends[cfg.BackendType] // waitConfig checked it is there
		var published, publishedV6 json.RawMessage
		if pr, ok := a.deps.Store.(store.PublishedReader); ok {
			if attrs, err := pr.Published(ctx, ext.PublicIP, a.hostID); err != nil {
				a.log.Warn("cannot read what this host published before; starting afresh", "cause", store.Classify(err), "err", err.Error())
			} else if attrs.BackendType == cfg.BackendType {
				published, publishedV6 = attrs.BackendData, attrs.BackendV6Data
			}
		}
		be, err := factory(backend.Config{
			Ext:             ext,
			Network:         cfg,
			Log:             a.log,
			StateDir:        a.opts.StateDir,
			ReconcilePeriod: a.opts.ReconcilePeriod,
			Metrics:         a.deps.Metrics,
			Published:       published,
			PublishedV6:     publishedV6,
			UDP:             backend.UDPTuning{NoOffload: !a.opts.UDPOffload, Queues: a.opts.UDPQueues},
		})
		if err != nil {
			return nil, nil, lease.Lease{}, fmt.Errorf("start the %s backend: %w", cfg.BackendType, err)
		}

		a.deps.Health.SetNotReady("acquiring a subnet lease")
		own, err := a.acquire(ctx, cfg, ext, be)
		if errors.Is(err, errConfigChanged) {
			continue
		}
		if err != nil {
			return nil, nil, lease.Lease{}, err
		}
		return cfg, be, own, nil
	}
}

// refusal is a lease the agent will not take, and what to tell the
// operator about it.
type refusal struct {
	reason string // for /readyz
	msg    string // the ERROR line
	args   []any
	misfit bool // the config no longer fits: re-read it while waiting
}

// refusalOf explains an Acquire error that is a refusal rather than a
// failure: another live host uses our PublicIP, or the config no longer
// fits this host's subnet. ok is false for any other error.
func (a *Agent) refusalOf(err error, cfg *netconf.Config) (r refusal, ok bool) {
	var dup *lease.PublicIPInUseError
	var mis *lease.SubnetMisfitError
	switch {
	case errors.As(err, &dup):
		key := a.leaseKey(dup.Other.Subnet, dup.Other.IPv6Subnet)
		fix := fmt.Sprintf("two hosts use public IP %s: set --public-ip or --iface on one of them", dup.PublicIP)
		r.reason = fmt.Sprintf("refusing the lease %s of another live host with this host's public IP %s (its host ID %s, ours %s): %s",
			dup.Other.Subnet, dup.PublicIP, dup.Other.Attrs.HostID, dup.HostID, fix)
		r.msg = fix + "; not taking over the other host's live lease, waiting for it to go"
		r.args = []any{"other-lease", key, "other-host-id", dup.Other.Attrs.HostID, "host-id", dup.HostID,
			"if-this-host-held-it", fmt.Sprintf("if that lease was this host's before it lost %s, delete the key %s", a.hostIDPath(), key)}
		return r, true
	case errors.As(err, &mis):
		r.misfit = true
		was := ""
		if prev, perr := subnetenv.Read(a.opts.SubnetFile); perr == nil && len(prev.Networks) > 0 && prev.Subnet.IsValid() {
			was = fmt.Sprintf("Network %s with /%d subnets (from %s)", prev.Networks[0], prev.Subnet.Bits(), a.opts.SubnetFile)
		}
		r.reason = fmt.Sprintf("keeping subnet %s: the network config changed and no longer fits it (%s); restore the config, or renumber this host on purpose (see the log)", mis.Subnet, mis.Why)
		r.msg = "the network config no longer fits this host's subnet; keeping the lease and the pods' subnet and waiting for the config to be restored"
		r.args = []any{"subnet", mis.Subnet, "from", mis.Source, "why", mis.Why,
			"now", fmt.Sprintf("Network %s, SubnetLen %d", cfg.Network, cfg.SubnetLen)}
		if was != "" {
			r.args = append(r.args, "was", was)
		}
		r.args = append(r.args, "fix", fmt.Sprintf("restore the network config; or, to renumber this host on purpose: stop the agent, delete the key %s and %s, drain this host's pods, start the agent",
			a.leaseKey(mis.Subnet), a.opts.SubnetFile))
		return r, true
	}
	return refusal{}, false
}

// waitRefused waits before a refused acquire is tried again: *delay
// (then doubled, up to refusedRetryMax) for another host's lease; for a
// config refusal until the config differs from cfg, when it returns
// errConfigChanged.
func (a *Agent) waitRefused(ctx context.Context, cfg *netconf.Config, r refusal, delay *time.Duration) error {
	if !r.misfit {
		if err := sleep(ctx, *delay); err != nil {
			return err
		}
		*delay = min(*delay*2, refusedRetryMax)
		return nil
	}
	// Every refusedRetryMisfit the acquire is tried anyway, in case the
	// operator removed the lease and subnet.env without stopping the
	// agent.
	for range refusedRetryMisfit / configPoll {
		if err := sleep(ctx, configPoll); err != nil {
			return err
		}
		now, err := a.deps.Store.Config(ctx)
		if err != nil || reflect.DeepEqual(now, cfg) {
			// An unreadable config is waitConfig's to report when join
			// starts over; until it changes, the refusal stands.
			continue
		}
		a.log.Info("the network config changed; starting over with it", "network", now.Network, "subnet-len", now.SubnetLen, "backend", now.BackendType)
		return errConfigChanged
	}
	return nil
}

// leaseKey names a lease's key in the store, for messages.
func (a *Agent) leaseKey(sn netip.Prefix, v6 ...netip.Prefix) string {
	if a.opts.KubeSubnetMgr {
		return "the Node's podCIDR"
	}
	var six netip.Prefix
	if len(v6) > 0 {
		six = v6[0] // a dual-stack key names both subnets
	}
	return a.opts.EtcdPrefix + "/subnets/" + lease.KeyName(sn, six)
}

// hostIDPath is where this host's ID is kept.
func (a *Agent) hostIDPath() string { return filepath.Join(a.opts.StateDir, HostIDFileName) }
