package faults

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab"
)

// plans are the labs of the suite and their rows. The main vxlan lab runs
// with --ip-masq, so that the nat table has weft's rules to lose and the
// Docker row has something to break. Rows that leave a host changed for
// good (a renumbered host, a stolen lease) get a lab of their own.
func plans(o Options) []labPlan {
	three := func(backend string, pods int, masq bool) lab.Spec {
		return lab.Spec{Hosts: 3, Pods: pods, Backend: backend, IPMasq: masq}
	}
	return []labPlan{
		{"v", three("vxlan", 1, true), []fault{
			kernelDeleted("route", "vxlan"),
			kernelDeleted("neigh", "vxlan"),
			kernelDeleted("fdb", "vxlan"),
			kernelDeleted("device", "vxlan"),
			natGone("iptables -t nat -F", []string{"iptables", "-t", "nat", "-F"}, "nat-flushed"),
			natGone("nft delete table ip nat", []string{"nft", "delete", "table", "ip", "nat"}, "nat-table-deleted"),
			kernelChanged("neigh", "vxlan"),
			kernelChanged("fdb", "vxlan"),
			dockerRestart(),
			dockerForwardDrop(),
			agentKillJoinLeave(),
			etcdRestarted(),
			etcdBlocked(o.EtcdBlock),
			strayLease(25),
			strayLease(32),
			strayLease(17),
			dupVtepMAC(),
			otherVNI(),
			storeUnreachableAtStart(),
			storeAuth(),
			configGone("config-deleted", "the network config deleted for 3 s", ""),
			configGone("config-invalid", "the network config replaced by invalid JSON for 3 s", `{"Network": "172.7.0.0/16", "Backend": {"Type": `),
			healthzDefault(),
			cniDelBadDelegate(),
			etcdPasswordArgv(),
		}},
		{"g", three("host-gw", 1, false), []fault{
			kernelDeleted("route", "host-gw"),
			kernelChanged("route", "host-gw"),
		}},
		{"c", three("vxlan", 1, false), []fault{restartChangedConfig()}},
		{"d", three("vxlan", 1, false), []fault{dupPublicIP()}},
		{"r", three("host-gw", 0, false), []fault{raceLastSubnet()}},
		{"e", three("vxlan", 1, false), []fault{etcdClusterLoss()}},
	}
}

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var linkMAC = regexp.MustCompile(`link/ether (\S+)`)

// vtepMAC is the MAC of a host's flannel.1.
func vtepMAC(ctx context.Context, ns string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-o", "link", "show", "flannel.1").Output()
	if err != nil {
		return "", fmt.Errorf("read flannel.1 of %s: %w", ns, err)
	}
	m := linkMAC.FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("no MAC on flannel.1 of %s", ns)
	}
	return m[1], nil
}

// kernelView is one kind of kernel entry on the victim host (h1) for its
// peer h2: how to list it, delete it and change it to something wrong.
type kernelView struct {
	show, del, change []string
}

func viewOf(ctx context.Context, e *env, kind string) (kernelView, error) {
	v, peer := e.host(0), e.host(1)
	sub := e.subnet(1)
	peerIP := peer.Addr.Addr().String()
	n := []string{"ip", "-n", v.NS}
	switch kind {
	case "route":
		gw := "10.4.7.250"
		if e.backend == "vxlan" {
			return kernelView{
				show: append(n, "route", "show", "exact", sub.String()),
				del:  append(n, "route", "del", sub.String()),
			}, nil
		}
		return kernelView{
			show:   append(n, "route", "show", "exact", sub.String()),
			del:    append(n, "route", "del", sub.String()),
			change: append(n, "route", "replace", sub.String(), "via", gw, "dev", v.Iface, "proto", "87"),
		}, nil
	case "neigh":
		return kernelView{
			show:   append(n, "neigh", "show", sub.Addr().String(), "dev", "flannel.1"),
			del:    append(n, "neigh", "del", sub.Addr().String(), "dev", "flannel.1"),
			change: append(n, "neigh", "replace", sub.Addr().String(), "lladdr", "02:00:00:00:00:01", "dev", "flannel.1", "nud", "permanent"),
		}, nil
	case "fdb":
		mac, err := vtepMAC(ctx, peer.NS)
		if err != nil {
			return kernelView{}, err
		}
		b := []string{"bridge", "-n", v.NS, "fdb"}
		return kernelView{
			show:   append(b, "show", "dev", "flannel.1"),
			del:    append(b, "del", mac, "dev", "flannel.1", "dst", peerIP, "self"),
			change: append(b, "replace", mac, "dev", "flannel.1", "dst", "10.4.7.250", "self", "permanent"),
		}, nil
	case "device":
		return kernelView{
			show: []string{"sh", "-c", fmt.Sprintf("ip -n %[1]s route show dev flannel.1; ip -n %[1]s neigh show dev flannel.1; bridge -n %[1]s fdb show dev flannel.1; ip -n %[1]s -4 -br addr show dev flannel.1; ip -n %[1]s -br link show dev flannel.1", v.NS)},
			del:  append(n, "link", "del", "flannel.1"),
		}, nil
	}
	return kernelView{}, fmt.Errorf("unknown kernel entry kind %q", kind)
}

func run(ctx context.Context, argv []string) (string, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// restoredWithin waits until show prints what it printed before.
func restoredWithin(ctx context.Context, p *probe, show []string, before string, timeout time.Duration) {
	took, ok := waitUntil(ctx, p.t0, timeout, func() bool {
		out, err := run(ctx, show)
		return err == nil && sortedLines(out) == before
	})
	p.repairedBy(p.t0, took, ok)
}

// repairLine matches the agent's line about putting an entry back.
var repairLine = regexp.MustCompile(`(?i)repair|restor|re-?creat|device updated|route (added|replaced)|trigger="[^"]*(deleted|changed)`)

func kernelDeleted(kind, backend string) fault {
	return fault{
		id:   "deleted-" + kind + "/" + backend,
		text: "h1's " + map[string]string{"route": "route to h2's subnet", "neigh": "neighbour entry of h2's VTEP", "fdb": "FDB entry of h2's VTEP", "device": "flannel.1 device"}[kind] + " deleted",
		build: func(ctx context.Context, e *env, p *probe) error {
			v, err := viewOf(ctx, e, kind)
			if err != nil {
				return err
			}
			before, err := run(ctx, v.show)
			if err != nil {
				return err
			}
			p.row.Forced = true
			p.cause, p.causeHosts = repairLine, []string{"h1"}
			p.inject()
			if _, err := run(ctx, v.del); err != nil {
				return err
			}
			restoredWithin(ctx, p, v.show, sortedLines(before), 15*time.Second)
			return nil
		},
	}
}

func kernelChanged(kind, backend string) fault {
	return fault{
		id:   "changed-" + kind + "/" + backend,
		text: "h1's " + map[string]string{"route": "route to h2's subnet given a wrong gateway", "neigh": "neighbour entry of h2's VTEP given a wrong MAC", "fdb": "FDB entry of h2's VTEP given a wrong dst"}[kind],
		build: func(ctx context.Context, e *env, p *probe) error {
			v, err := viewOf(ctx, e, kind)
			if err != nil {
				return err
			}
			before, err := run(ctx, v.show)
			if err != nil {
				return err
			}
			p.row.Forced = true
			p.cause, p.causeHosts = repairLine, []string{"h1"}
			p.inject()
			if _, err := run(ctx, v.change); err != nil {
				return err
			}
			restoredWithin(ctx, p, v.show, sortedLines(before), 15*time.Second)
			return nil
		},
	}
}

// natRules is h1's nat table as iptables-save prints its rules (the
// chain policies and counters left out).
func natRules(ns string) []string {
	return []string{"sh", "-c", "ip netns exec " + ns + " iptables-save -t nat | grep '^-A'"}
}

func natGone(what string, argv []string, id string) fault {
	return fault{
		id:   id,
		text: "`" + what + "` on h1 (--ip-masq)",
		build: func(ctx context.Context, e *env, p *probe) error {
			ns := e.host(0).NS
			before, err := run(ctx, natRules(ns))
			if err != nil {
				return err
			}
			p.cause, p.causeHosts = regexp.MustCompile(`iptables|nftables|traffic rules`), []string{"h1"}
			p.inject()
			if _, err := sh(ctx, ns, argv...); err != nil {
				return err
			}
			restoredWithin(ctx, p, natRules(ns), sortedLines(before), 15*time.Second)
			return nil
		},
	}
}

// dockerRestart does to h1's nat table what a Docker restart does on a
// flannel host whose Docker bridge has the host's subnet (seed 000, 3.2.3;
// docs/rules.md): Docker inserts its own MASQUERADE for the bridge subnet
// at the top of POSTROUTING. Pod→pod must keep its source address, which
// the echo server on h2p1 reports.
func dockerRestart() fault {
	return fault{
		id:   "docker-restart",
		text: "Docker's `-I POSTROUTING -s <h1 subnet> ! -o docker0 -j MASQUERADE` inserted on h1 (--ip-masq); h1p1→h2p1 must keep its source",
		build: func(ctx context.Context, e *env, p *probe) error {
			h1, h2 := e.host(0), e.host(1)
			src, dst := e.podAddr(0), e.podAddr(1)
			echo, err := lab.ServeSourceEcho(h2.Pods[0].NS, dst)
			if err != nil {
				return err
			}
			defer echo.Close()
			if seen, err := lab.SeenSource(ctx, h1.Pods[0].NS, dst); err != nil || seen != src {
				return fmt.Errorf("before the fault h2p1 saw %v (err %v), want %s", seen, err, src)
			}
			rule := []string{"POSTROUTING", "-s", e.subnet(0).String(), "!", "-o", "docker0", "-j", "MASQUERADE"}
			defer func() {
				_, _ = sh(context.WithoutCancel(ctx), h1.NS, append([]string{"iptables", "-t", "nat", "-D"}, rule...)...)
			}()
			p.cause, p.causeHosts = regexp.MustCompile(`iptables|nftables|traffic rules`), []string{"h1"}
			p.inject()
			if _, err := sh(ctx, h1.NS, append([]string{"iptables", "-t", "nat", "-I", rule[0], "1"}, rule[1:]...)...); err != nil {
				return err
			}
			var lastSeen netip.Addr
			took, ok := waitUntil(ctx, p.t0, 15*time.Second, func() bool {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				seen, err := lab.SeenSource(cctx, h1.Pods[0].NS, dst)
				if err == nil {
					lastSeen = seen
				}
				return err == nil && seen == src
			})
			p.repairedBy(p.t0, took, ok)
			if !ok {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("h2p1 still sees %s instead of %s", lastSeen, src))
			}
			return nil
		},
	}
}

// dockerForwardDrop does the other thing a Docker (re)start does to a
// host: the FORWARD policy becomes DROP (docs/rules.md). Pod traffic
// through h1 is dropped until weft's forward accepts are in: forced loss,
// judged by the longest silence of the pings.
func dockerForwardDrop() fault {
	return fault{
		id:   "docker-forward-drop",
		text: "Docker's `iptables -P FORWARD DROP` on h1 (--ip-masq): weft's forward accepts must let pod traffic through again",
		build: func(ctx context.Context, e *env, p *probe) error {
			h1 := e.host(0)
			defer func() { _, _ = sh(context.WithoutCancel(ctx), h1.NS, "iptables", "-P", "FORWARD", "ACCEPT") }()
			p.row.Forced = true
			p.cause, p.causeHosts = regexp.MustCompile(`(?i)forward`), []string{h1.Name}
			p.inject()
			if _, err := sh(ctx, h1.NS, "iptables", "-P", "FORWARD", "DROP"); err != nil {
				return err
			}
			return sleepCtx(ctx, time.Second)
		},
	}
}

// agentKillJoinLeave SIGKILLs h3's agent; while it is down a new host
// joins and another leaves; the restarted agent must have the newcomer's
// route and not the leaver's.
func agentKillJoinLeave() fault {
	return fault{
		id:   "agent-kill-join-leave",
		text: "h3's agent SIGKILLed; while it is down a host joins and another leaves; then restarted",
		build: func(ctx context.Context, e *env, p *probe) error {
			h3 := e.host(2)
			s1, err := e.freeSubnet(ctx, netip.Prefix{})
			if err != nil {
				return err
			}
			leave := e.newSynth(s1)
			if err := leave.put(ctx, e); err != nil {
				return err
			}
			if _, ok := waitUntil(ctx, time.Now(), 10*time.Second, func() bool { return e.allHaveRoute(ctx, s1, true) }); !ok {
				return fmt.Errorf("synthetic host %s never reached every host", s1)
			}
			p.inject()
			if err := e.l.StopAgent(h3.Name, syscall.SIGKILL); err != nil {
				return err
			}
			s2, err := e.freeSubnet(ctx, netip.Prefix{})
			if err != nil {
				return err
			}
			join := e.newSynth(s2)
			if err := join.put(ctx, e); err != nil {
				return err
			}
			defer join.remove(context.WithoutCancel(ctx), e)
			if err := leave.remove(ctx, e); err != nil {
				return err
			}
			p.cause, p.causeHosts = regexp.MustCompile(regexp.QuoteMeta(s2.String())), []string{h3.Name}
			start := time.Now()
			if err := e.l.SpawnAgent(h3.Name); err != nil {
				return err
			}
			took, ok := waitUntil(ctx, start, 15*time.Second, func() bool {
				return hasRoute(ctx, h3.NS, s2) && !hasRoute(ctx, h3.NS, s1)
			})
			p.repairedBy(start, took, ok)
			return e.l.WaitAgent(ctx, h3.Name)
		},
	}
}

// storeCause matches a line that names the store as the trouble.
// The store's name alone is not enough: the agent warns at start about
// etcd without TLS, which names no trouble.
var storeCause = warnOrError("unreachable", "unavailable", "cannot reach", "refused", "timed? ?out", "deadline", "no route", "lost")

// changeArrives writes a synthetic lease and records how long after from
// every host had its route: the time for the store to be of use again.
func changeArrives(ctx context.Context, e *env, p *probe, from time.Time) error {
	sub, err := e.freeSubnet(ctx, netip.Prefix{})
	if err != nil {
		return err
	}
	s := e.newSynth(sub)
	if err := s.put(ctx, e); err != nil {
		return err
	}
	took, ok := waitUntil(ctx, from, 30*time.Second, func() bool { return e.allHaveRoute(ctx, sub, true) })
	p.repairedBy(from, took, ok)
	if err := s.remove(ctx, e); err != nil {
		return err
	}
	waitUntil(ctx, time.Now(), 30*time.Second, func() bool { return e.allHaveRoute(ctx, sub, false) })
	return nil
}

func etcdPortRule(e *env, src string) []string {
	port := e.topo.Etcd.ClientURL[strings.LastIndexByte(e.topo.Etcd.ClientURL, ':')+1:]
	r := []string{"INPUT", "-i", e.topo.Underlay.Bridge, "-p", "tcp", "--dport", port, "-j", "DROP"}
	if src != "" {
		r = append(r[:1], append([]string{"-s", src}, r[1:]...)...)
	}
	return r
}

// reconnectGoal is the repair goal of rows that end with etcd reachable
// again after a partition: the client finds the path back only on its
// next connection attempt, and one attempt times out after 1 s (TCP's
// first SYN retransmission) with the next following within 0.5 s
// (internal/store/etcd/calls.go), so up to 1.5 s plus the work after it
// is the design, not a fault of the row.
const reconnectGoal = 2 * time.Second

func etcdBlocked(d time.Duration) fault {
	return fault{
		id:   "etcd-blocked",
		text: fmt.Sprintf("etcd's port dropped for %s, then open again; repair: a lease written after reaches every host", d),
		goal: reconnectGoal,
		build: func(ctx context.Context, e *env, p *probe) error {
			ul := e.topo.Underlay.NS
			rule := etcdPortRule(e, "")
			p.cause = storeCause
			p.inject()
			if _, err := sh(ctx, ul, append([]string{"iptables", "-I"}, rule...)...); err != nil {
				return err
			}
			serr := sleepCtx(ctx, d)
			if _, err := sh(context.WithoutCancel(ctx), ul, append([]string{"iptables", "-D"}, rule...)...); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			return changeArrives(ctx, e, p, time.Now())
		},
	}
}

func etcdRestarted() fault {
	return fault{
		id:   "etcd-restarted",
		text: "etcd SIGKILLed, restarted 2 s later on its data; repair: a lease written after reaches every host",
		build: func(ctx context.Context, e *env, p *probe) error {
			p.cause = storeCause
			p.inject()
			if err := e.l.StopEtcd(syscall.SIGKILL); err != nil {
				return err
			}
			if err := sleepCtx(ctx, 2*time.Second); err != nil {
				return err
			}
			if err := e.l.StartEtcd(ctx); err != nil {
				return err
			}
			return changeArrives(ctx, e, p, time.Now())
		},
	}
}

// conflictWords are what a line refusing a clashing lease says; a line
// that only fails to program a peer does not name the clash.
var conflictWords = []string{"(?i)overlap", "(?i)conflict", "(?i)refus", "(?i)duplicate", "(?i)already", "(?i)clash"}

// holdStray writes the synthetic lease s for 2 s and removes it. With
// what set, s must not be programmed: a host with a route for its subnet
// at the end is a problem of the row, naming what.
func holdStray(ctx context.Context, e *env, p *probe, s *synth, what string) error {
	p.inject()
	if err := s.put(ctx, e); err != nil {
		return err
	}
	defer s.remove(context.WithoutCancel(ctx), e)
	if err := sleepCtx(ctx, 2*time.Second); err != nil || what == "" {
		return err
	}
	for _, h := range e.topo.Hosts {
		if hasRoute(ctx, h.NS, s.Subnet) {
			p.row.Problems = append(p.row.Problems, fmt.Sprintf("%s installed a route for %s", h.Name, what))
		}
	}
	return nil
}

// strayLease writes a lease of prefix length bits over h2's live subnet
// (for /32: h2p1's own address) with another PublicIP, for 2 s.
func strayLease(bits int) fault {
	return fault{
		id:   fmt.Sprintf("lease-overlap-%d", bits),
		text: fmt.Sprintf("a /%d lease with another PublicIP over h2's live /24 for 2 s", bits),
		build: func(ctx context.Context, e *env, p *probe) error {
			var sub netip.Prefix
			switch {
			case bits == 32:
				sub = netip.PrefixFrom(e.podAddr(1), 32)
			default:
				sub = netip.PrefixFrom(e.subnet(1).Addr(), bits).Masked()
			}
			p.cause = naming(conflictWords, regexp.QuoteMeta(sub.String()), regexp.QuoteMeta(strings.Replace(sub.String(), "/", "-", 1)))
			return holdStray(ctx, e, p, e.newSynth(sub), fmt.Sprintf("the stray /%d", bits))
		},
	}
}

// dupVtepMAC writes, for 2 s, a lease on a free subnet that sorts before
// a live peer's, carrying that peer's VtepMAC.
func dupVtepMAC() fault {
	return fault{
		id:   "lease-dup-vtepmac",
		text: "a vxlan lease on a free subnet sorting before a live peer's, with that peer's VtepMAC, for 2 s",
		build: func(ctx context.Context, e *env, p *probe) error {
			victim := -1
			var sub netip.Prefix
			for _, i := range []int{1, 2, 0} {
				s, err := e.freeSubnet(ctx, e.subnet(i))
				if err == nil {
					victim, sub = i, s
					break
				}
			}
			if victim < 0 {
				return fmt.Errorf("no free subnet below any host's")
			}
			mac, err := vtepMAC(ctx, e.host(victim).NS)
			if err != nil {
				return err
			}
			s := e.newSynth(sub)
			s.MAC = mac
			p.cause = naming(append(conflictWords, "VtepMAC"), regexp.QuoteMeta(sub.String()), regexp.QuoteMeta(mac))
			// Its route may go in or not (the genuine peer's pings are what
			// matter), so only the row's loss and cause judge it.
			return holdStray(ctx, e, p, s, "")
		},
	}
}

func otherVNI() fault {
	return fault{
		id:   "lease-other-vni",
		text: "a vxlan lease with VNI 7 (the lab's is 1) on a free subnet, for 2 s: must not be programmed",
		build: func(ctx context.Context, e *env, p *probe) error {
			sub, err := e.freeSubnet(ctx, netip.Prefix{})
			if err != nil {
				return err
			}
			s := e.newSynth(sub)
			s.VNI = 7
			p.cause = naming([]string{"VNI"}, regexp.QuoteMeta(sub.String()), regexp.QuoteMeta(strings.Replace(sub.String(), "/", "-", 1)))
			return holdStray(ctx, e, p, s, "the VNI 7 lease "+sub.String())
		},
	}
}

func storeUnreachableAtStart() fault {
	return fault{
		id:   "store-unreachable-at-start",
		text: "h3's agent restarted while etcd's port is dropped for h3 (3 s): a line naming the cause within 2 s; repair: ready after the port opens",
		goal: reconnectGoal,
		build: func(ctx context.Context, e *env, p *probe) error {
			h3 := e.host(2)
			ul := e.topo.Underlay.NS
			rule := etcdPortRule(e, h3.Addr.Addr().String())
			if _, err := sh(ctx, ul, append([]string{"iptables", "-I"}, rule...)...); err != nil {
				return err
			}
			if err := e.l.StopAgent(h3.Name, syscall.SIGTERM); err != nil {
				return err
			}
			p.cause, p.causeWithin, p.causeHosts = storeCause, 2*time.Second, []string{h3.Name}
			p.inject()
			if err := e.l.SpawnAgent(h3.Name); err != nil {
				return err
			}
			serr := sleepCtx(ctx, 3*time.Second)
			if _, err := sh(context.WithoutCancel(ctx), ul, append([]string{"iptables", "-D"}, rule...)...); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			open := time.Now()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err := e.l.WaitAgent(wctx, h3.Name)
			p.repairedBy(open, time.Since(open), err == nil)
			return nil
		},
	}
}

func storeAuth() fault {
	return fault{
		id:   "store-auth",
		text: "etcd auth turned on under the running agents (which have no credentials) for 7 s: a line naming the cause within 6 s",
		build: func(ctx context.Context, e *env, p *probe) error {
			const user, pw = "root", "faults-suite"
			if _, err := e.cli.UserAdd(ctx, user, pw); err != nil {
				return fmt.Errorf("add etcd user: %w", err)
			}
			defer func() { _, _ = e.cli.UserDelete(context.WithoutCancel(ctx), user) }()
			if _, err := e.cli.UserGrantRole(ctx, user, "root"); err != nil {
				return fmt.Errorf("grant root role: %w", err)
			}
			// Turning auth on changes no key and breaks no connection, and
			// the watch already in place keeps working: the agents learn of
			// it from their next request, the store probe every 5 s.
			p.cause, p.causeWithin = warnOrError("auth", "permission", "user", "token", "credential"), 6*time.Second
			p.inject()
			if _, err := e.cli.AuthEnable(ctx); err != nil {
				return fmt.Errorf("enable etcd auth: %w", err)
			}
			serr := sleepCtx(ctx, 7*time.Second)
			root, err := e.l.EtcdClientAs(user, pw)
			if err != nil {
				return err
			}
			defer root.Close()
			if _, err := root.AuthDisable(context.WithoutCancel(ctx)); err != nil {
				return fmt.Errorf("disable etcd auth: %w", err)
			}
			return serr
		},
	}
}

// configGone deletes the network config (value "") or replaces it with
// value for 3 s, then puts it back.
func configGone(id, text, value string) fault {
	return fault{
		id:   id,
		text: text + ": a line naming the cause within 2 s",
		build: func(ctx context.Context, e *env, p *probe) error {
			key, orig := e.topo.Etcd.ConfigKey, e.topo.Etcd.Config
			p.cause, p.causeWithin = warnOrError("config"), 2*time.Second
			p.inject()
			var err error
			if value == "" {
				_, err = e.cli.Delete(ctx, key)
			} else {
				_, err = e.cli.Put(ctx, key, value)
			}
			if err != nil {
				return fmt.Errorf("change %s: %w", key, err)
			}
			serr := sleepCtx(ctx, 3*time.Second)
			if _, err := e.cli.Put(context.WithoutCancel(ctx), key, orig); err != nil {
				return fmt.Errorf("restore %s: %w", key, err)
			}
			return serr
		},
	}
}

var healthzDefaultRE = regexp.MustCompile(`-healthz-ip string\n[^\n]*\(default "([^"]*)"\)`)

func healthzDefault() fault {
	return fault{
		id:   "healthz-default",
		text: "the health/metrics listener's default address (`weft agent -h`): loopback, or a loud reason",
		build: func(ctx context.Context, e *env, p *probe) error {
			out, _ := exec.CommandContext(ctx, e.l.WeftBinary(), "agent", "-h").CombinedOutput()
			m := healthzDefaultRE.FindSubmatch(out)
			if m == nil {
				return fmt.Errorf("no --healthz-ip default in `weft agent -h`")
			}
			def := string(m[1])
			if a, err := netip.ParseAddr(def); err != nil || !a.IsLoopback() {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("--healthz-ip defaults to %q: /metrics and /readyz open to every address", def))
			}
			return nil
		},
	}
}

// cniDelBadDelegate runs the flannel CNI plugin as a runtime would: an
// ADD whose delegate type does not exist (fails), then DEL of the same
// container, which the CNI spec says must succeed.
func cniDelBadDelegate() fault {
	return fault{
		id:   "cni-del-bad-delegate",
		text: "CNI ADD with a delegate `type` that does not exist, then DEL of that container: DEL must succeed",
		build: func(ctx context.Context, e *env, p *probe) error {
			h := e.host(0)
			dir, err := os.MkdirTemp(h.Dir, "faults-cni-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			// The container's own namespace, as a runtime would give: the
			// plugins refuse a CNI_NETNS that is their own.
			ns := fmt.Sprintf("wfc%d", os.Getpid())
			if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
				return fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"faults","type":"flannel","subnetFile":%q,"dataDir":%q,"delegate":{"type":"no-such-plugin"}}`, h.SubnetFile, dir)
			cni := func(cmd string) (string, error) {
				c := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, e.l.CNIBinDir()+"/flannel")
				c.Env = append(os.Environ(), "CNI_COMMAND="+cmd, "CNI_CONTAINERID=faults-bad-delegate",
					"CNI_NETNS=/var/run/netns/"+ns, "CNI_IFNAME=eth9", "CNI_PATH="+e.l.CNIBinDir())
				c.Stdin = strings.NewReader(conf)
				out, err := c.CombinedOutput()
				return strings.TrimSpace(string(out)), err
			}
			if _, err := cni("ADD"); err == nil {
				return fmt.Errorf("ADD with delegate type no-such-plugin succeeded")
			}
			if out, err := cni("DEL"); err != nil {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("DEL fails: %.120s", out))
			}
			return nil
		},
	}
}

// etcdPasswordArgv restarts h3's agent with --etcd-password on its
// command line (no user, so etcd without auth still serves it): the
// password is then readable by every user in /proc/PID/cmdline, which the
// agent must say, pointing to FLANNELD_ETCD_PASSWORD or a file.
func etcdPasswordArgv() fault {
	return fault{
		id:   "etcd-password-argv",
		text: "h3's agent restarted with `--etcd-password` on its command line: a warning within 2 s that /proc shows it",
		build: func(ctx context.Context, e *env, p *probe) error {
			h3 := e.host(2)
			if err := e.l.StopAgent(h3.Name, syscall.SIGTERM); err != nil {
				return err
			}
			p.cause, p.causeWithin, p.causeHosts = naming([]string{"(?i)password"}, "(?i)command line", "FLANNELD_ETCD_PASSWORD", "/proc", "(?i)argv"), 2*time.Second, []string{h3.Name}
			p.inject()
			if err := e.l.SpawnAgent(h3.Name, "--etcd-password=faults-secret"); err != nil {
				return err
			}
			err := e.l.WaitAgent(ctx, h3.Name)
			// Back to the lab's own command line for the rows after.
			if serr := e.l.StopAgent(h3.Name, syscall.SIGTERM); serr != nil {
				return serr
			}
			if serr := e.l.StartAgent(ctx, h3.Name); serr != nil {
				return serr
			}
			return err
		},
	}
}

// restartChangedConfig restarts h3's agent while the network config
// names another Network (2 s), then puts the config back: h3 must keep
// its subnet and its pod stay reachable.
func restartChangedConfig() fault {
	return fault{
		id:     "restart-changed-config",
		noHeal: true,
		text:   "h3's agent restarted while the config's Network is 10.200.0.0/16 (2 s), config put back: h3 must keep its subnet",
		build: func(ctx context.Context, e *env, p *probe) error {
			h3 := e.host(2)
			before := e.subnet(2)
			key, orig := e.topo.Etcd.ConfigKey, e.topo.Etcd.Config
			if err := e.l.StopAgent(h3.Name, syscall.SIGTERM); err != nil {
				return err
			}
			p.cause, p.causeHosts = warnOrError(`10\.200\.0\.0/16`), []string{h3.Name}
			p.inject()
			if _, err := e.cli.Put(ctx, key, strings.Replace(orig, e.topo.Spec.Network.String(), "10.200.0.0/16", 1)); err != nil {
				return err
			}
			if err := e.l.SpawnAgent(h3.Name); err != nil {
				return err
			}
			serr := sleepCtx(ctx, 2*time.Second)
			if _, err := e.cli.Put(context.WithoutCancel(ctx), key, orig); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := e.l.WaitAgent(wctx, h3.Name); err != nil {
				p.row.Problems = append(p.row.Problems, "h3 not ready 20 s after the config came back")
				return nil
			}
			if after := e.subnet(2); after != before {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("h3 renumbered %s → %s; its pods are cut off", before, after))
			}
			return sleepCtx(ctx, time.Second)
		},
	}
}

// dupPublicIP restarts h3's agent with h2's --public-ip (the cloned-VM
// mistake) for 3 s.
func dupPublicIP() fault {
	return fault{
		id:     "dup-public-ip",
		noHeal: true,
		text:   "h3's agent restarted with h2's --public-ip (a cloned VM) for 3 s: h2 must keep its lease, the clash be named",
		build: func(ctx context.Context, e *env, p *probe) error {
			h2, h3 := e.host(1), e.host(2)
			ip := h2.Addr.Addr().String()
			if err := e.l.StopAgent(h3.Name, syscall.SIGTERM); err != nil {
				return err
			}
			p.cause = naming(append(conflictWords, "(?i)two hosts", "(?i)same public ?ip"), regexp.QuoteMeta(ip))
			p.inject()
			if err := e.l.SpawnAgent(h3.Name, "--public-ip="+ip); err != nil {
				return err
			}
			if err := sleepCtx(ctx, 3*time.Second); err != nil {
				return err
			}
			if env, err := os.ReadFile(h3.SubnetFile); err == nil && strings.Contains(string(env), "FLANNEL_SUBNET="+e.subnet(1).Addr().Next().String()) {
				p.row.Problems = append(p.row.Problems, fmt.Sprintf("h3 took h2's lease %s", e.subnet(1)))
			}
			return nil
		},
	}
}
