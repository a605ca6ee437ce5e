package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
)

// env is one running lab the rows act on.
type env struct {
	l       *lab.Lab
	topo    lab.Topology
	backend string
	cli     *clientv3.Client
	pairs   []pingPair
	// nextSynth numbers synthetic leases (fresh MACs, public IPs).
	nextSynth int
}

// host returns the i-th host (0-based).
func (e *env) host(i int) lab.Host { return e.topo.Hosts[i] }

func (e *env) subnet(i int) netip.Prefix {
	s, _ := e.l.Subnet(e.host(i).Name)
	return s
}

func (e *env) podAddr(i int) netip.Addr {
	a, _ := e.l.PodAddr(e.host(i).Pods[0].Name)
	return a
}

// meshPairs pings from the first pod of every host to the first pod of
// every other host.
func meshPairs(l *lab.Lab) []pingPair {
	var ps []pingPair
	topo := l.Topology()
	for _, a := range topo.Hosts {
		for _, b := range topo.Hosts {
			if a.Name == b.Name || len(a.Pods) == 0 || len(b.Pods) == 0 {
				continue
			}
			dst, ok := l.PodAddr(b.Pods[0].Name)
			if !ok {
				continue
			}
			ps = append(ps, pingPair{SrcNS: a.Pods[0].NS, Src: a.Pods[0].Name, Dst: b.Pods[0].Name, DstAddr: dst})
		}
	}
	return ps
}

// probe is what a row's body tells the harness.
type probe struct {
	row *Row
	// t0 is when the fault was injected; cause lines are looked for from
	// here (less a little clock slack).
	t0 time.Time
	// cause matches the log line that names the fault; causeWithin, when
	// set, is how soon after t0 it must be logged.
	cause       matcher
	causeWithin time.Duration
	causeHosts  []string // hosts whose agent logs count; nil: all
}

// inject marks the moment of the fault.
func (p *probe) inject() { p.t0 = time.Now() }

// repairedBy records a repair measured from `from`.
func (p *probe) repairedBy(from time.Time, took time.Duration, ok bool) {
	p.row.Repair, p.row.Repaired = took, ok
}

// waitUntil polls cond every 10 ms until it holds or timeout passes and
// returns how long after from it first held.
func waitUntil(ctx context.Context, from time.Time, timeout time.Duration, cond func() bool) (time.Duration, bool) {
	deadline := from.Add(timeout)
	for {
		if cond() {
			return time.Since(from), true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(from), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sh runs argv inside netns ns (`ip netns exec`) and returns its output.
func sh(ctx context.Context, ns string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// sortedLines is out's non-empty lines, sorted: a kernel listing compared
// before and after a fault regardless of order.
func sortedLines(out string) string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	slices.Sort(ls)
	return strings.Join(ls, "\n")
}

// logOffsets are the sizes of the agents' logs before a row.
func logOffsets(topo lab.Topology) map[string]int64 {
	m := map[string]int64{}
	for _, h := range topo.Hosts {
		if st, err := os.Stat(h.AgentLog); err == nil {
			m[h.Name] = st.Size()
		}
	}
	return m
}

var logTime = regexp.MustCompile(`^time=(\S+)`)

// findCause returns the first line logged since the offsets, by the
// given hosts (nil: all), at or after since and, with within > 0, no
// later than since+within, that matches re.
func findCause(topo lab.Topology, offsets map[string]int64, hosts []string, re matcher, since time.Time, within time.Duration) string {
	var best string
	var bestAt time.Time
	for _, h := range topo.Hosts {
		if hosts != nil && !slices.Contains(hosts, h.Name) {
			continue
		}
		f, err := os.Open(h.AgentLog)
		if err != nil {
			continue
		}
		_, _ = f.Seek(offsets[h.Name], 0)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			m := logTime.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || at.Before(since.Add(-50*time.Millisecond)) {
				continue
			}
			if within > 0 && at.After(since.Add(within)) {
				break
			}
			if re.MatchString(line) && (best == "" || at.Before(bestAt)) {
				best, bestAt = h.Name+": "+strings.TrimPrefix(line, m[0]+" "), at
				break
			}
		}
		f.Close()
	}
	return best
}

// synth is a lease written straight into etcd in flannel's format, for a
// host that does not exist (or one that lies).
type synth struct {
	Key      string
	Subnet   netip.Prefix
	PublicIP netip.Addr
	MAC      string // vxlan VtepMAC
	VNI      int
	id       clientv3.LeaseID
}

// newSynth describes a fresh synthetic host on the lab's underlay (public
// IPs from .201, nobody answers them) with a fresh VtepMAC.
func (e *env) newSynth(subnet netip.Prefix) *synth {
	e.nextSynth++
	n := e.nextSynth
	u := e.topo.Segments[0].Net.Addr().As4()
	u[3] = byte(200 + n%50)
	return &synth{
		Key:      e.topo.Spec.EtcdPrefix + "/subnets/" + lease.KeyName(subnet, netip.Prefix{}),
		Subnet:   subnet,
		PublicIP: netip.AddrFrom4(u),
		MAC:      fmt.Sprintf("0e:fa:17:00:00:%02x", n),
		VNI:      1,
	}
}

func (s *synth) value(backend string) (string, error) {
	a := lease.Attrs{PublicIP: s.PublicIP, BackendType: backend}
	if backend == "vxlan" {
		d, err := json.Marshal(struct {
			VNI     int
			VtepMAC string
		}{s.VNI, s.MAC})
		if err != nil {
			return "", err
		}
		a.BackendData = d
	}
	b, err := json.Marshal(a)
	return string(b), err
}

// put writes the lease with its own etcd lease (5 minutes), as a host's
// would be.
func (s *synth) put(ctx context.Context, e *env) error {
	v, err := s.value(e.backend)
	if err != nil {
		return err
	}
	g, err := e.cli.Grant(ctx, 300)
	if err != nil {
		return fmt.Errorf("grant etcd lease for %s: %w", s.Key, err)
	}
	s.id = g.ID
	if _, err := e.cli.Put(ctx, s.Key, v, clientv3.WithLease(g.ID)); err != nil {
		return fmt.Errorf("write synthetic lease %s: %w", s.Key, err)
	}
	return nil
}

func (s *synth) remove(ctx context.Context, e *env) error {
	if _, err := e.cli.Delete(ctx, s.Key); err != nil {
		return fmt.Errorf("delete synthetic lease %s: %w", s.Key, err)
	}
	if s.id != 0 {
		_, _ = e.cli.Revoke(ctx, s.id)
	}
	return nil
}

// freeSubnet returns a /24 of the network that no host and no earlier
// synthetic lease uses, counting down from the top (or up from the
// bottom with below set, returning the highest free one under limit).
func (e *env) freeSubnet(ctx context.Context, below netip.Prefix) (netip.Prefix, error) {
	used := map[netip.Prefix]bool{}
	resp, err := e.cli.Get(ctx, e.topo.Spec.EtcdPrefix+"/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list leases: %w", err)
	}
	for _, kv := range resp.Kvs {
		if p, _, err := lease.ParseKeyName(path.Base(string(kv.Key))); err == nil {
			used[p.Masked()] = true
		}
	}
	for _, h := range e.topo.Hosts {
		if s, ok := e.l.Subnet(h.Name); ok {
			used[s] = true
		}
	}
	base := e.topo.Spec.Network.Addr().As4()
	for i := 250; i > 0; i-- {
		b := base
		b[2] = byte(i)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		if used[p] {
			continue
		}
		if below.IsValid() && p.Addr().Compare(below.Addr()) >= 0 {
			continue
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in %s", e.topo.Spec.Network)
}

// hasRoute reports whether host ns has a route for exactly dst.
func hasRoute(ctx context.Context, ns string, dst netip.Prefix) bool {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "route", "show", "exact", dst.String()).Output()
	return err == nil && strings.TrimSpace(string(out)) != ""
}

// allHaveRoute reports whether every host but skip has a route for dst.
func (e *env) allHaveRoute(ctx context.Context, dst netip.Prefix, want bool) bool {
	for _, h := range e.topo.Hosts {
		if hasRoute(ctx, h.NS, dst) != want {
			return false
		}
	}
	return true
}

// healthy reports whether every pair answers one ping.
func (e *env) healthy(ctx context.Context) error {
	for _, p := range e.pairs {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := lab.Ping(pctx, p.SrcNS, p.DstAddr)
		cancel()
		if err != nil {
			return fmt.Errorf("%s→%s: %w", p.Src, p.Dst, err)
		}
	}
	return nil
}
