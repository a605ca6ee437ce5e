package faults

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/kubecluster"
	"github.com/weftnet/weft/internal/lease"
)

// etcdCluster is three real etcd members (the etcd binary `make
// kube-tools` builds) on extra addresses of the lab's underlay switch.
type etcdCluster struct {
	bin     string
	ns      string
	dir     string
	names   []string
	addrs   []netip.Addr
	cmds    []*exec.Cmd
	initial string
}

func (c *etcdCluster) clientURL(i int) string { return "http://" + c.addrs[i].String() + ":2379" }

func (c *etcdCluster) endpoints() []string {
	var eps []string
	for i := range c.names {
		eps = append(eps, c.clientURL(i))
	}
	return eps
}

// start runs member i (again, on its data directory).
func (c *etcdCluster) start(i int) error {
	peer := "http://" + c.addrs[i].String() + ":2380"
	logf, err := os.OpenFile(filepath.Join(c.dir, c.names[i]+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", c.ns, c.bin,
		"--name="+c.names[i], "--data-dir="+filepath.Join(c.dir, c.names[i]),
		"--listen-client-urls="+c.clientURL(i), "--advertise-client-urls="+c.clientURL(i),
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster="+c.initial, "--initial-cluster-state=new", "--initial-cluster-token=weft-faults")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", c.names[i], err)
	}
	c.cmds[i] = cmd
	return nil
}

// kill SIGKILLs member i and reaps it.
func (c *etcdCluster) kill(i int) {
	if cmd := c.cmds[i]; cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		c.cmds[i] = nil
	}
}

func (c *etcdCluster) stop() {
	for i := range c.cmds {
		c.kill(i)
	}
}

// leader returns the index of the member that is leader now.
func (c *etcdCluster) leader(ctx context.Context, cli *clientv3.Client) (int, error) {
	var errs []error
	for i, ep := range c.endpoints() {
		if c.cmds[i] == nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no leader among the running members: %w", errors.Join(errs...))
}

// etcdClusterLoss moves the lab's agents onto a 3-member etcd cluster,
// then SIGKILLs a follower, restarts it, SIGKILLs the leader and restarts
// it. While each member is down a new lease must reach every host;
// afterwards every host's lease must still be in etcd with time to live.
func etcdClusterLoss() fault {
	c := &etcdCluster{}
	var cli *clientv3.Client
	return fault{
		id:     "etcd-cluster-member-loss",
		noHeal: true,
		text:   "3-member etcd: a follower SIGKILLed (and back), then the leader; repair: a lease written while the member is down reaches every host (for the leader: from the new leader's election)",
		setup: func(ctx context.Context, e *env) error {
			wd, _ := os.Getwd()
			dir, err := kubecluster.Locate("", wd, filepath.Dir(e.l.WeftBinary()))
			if err != nil {
				return fmt.Errorf("a 3-member cluster needs the etcd binary: %w", err)
			}
			c.bin, c.ns = filepath.Join(dir, "etcd"), e.topo.Underlay.NS
			c.dir = filepath.Join(e.topo.StateDir, "etcd-cluster")
			if err := os.MkdirAll(c.dir, 0o755); err != nil {
				return err
			}
			var peers []string
			for i := range 3 {
				a := e.topo.Underlay.Addr.Addr().As4()
				a[3] = byte(13 + i)
				addr := netip.AddrFrom4(a)
				c.names = append(c.names, fmt.Sprintf("m%d", i+1))
				c.addrs = append(c.addrs, addr)
				peers = append(peers, fmt.Sprintf("m%d=http://%s:2380", i+1, addr))
				if _, err := sh(ctx, c.ns, "ip", "addr", "add", netip.PrefixFrom(addr, e.topo.Underlay.Addr.Bits()).String(), "dev", e.topo.Underlay.Bridge); err != nil {
					return err
				}
			}
			c.initial = strings.Join(peers, ",")
			c.cmds = make([]*exec.Cmd, 3)
			for i := range 3 {
				if err := c.start(i); err != nil {
					c.stop()
					return err
				}
			}
			if cli, err = e.l.EtcdClientAt(c.endpoints()); err != nil {
				c.stop()
				return err
			}
			if _, ok := waitUntil(ctx, time.Now(), 30*time.Second, func() bool {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := cli.Put(pctx, e.topo.Etcd.ConfigKey, e.topo.Etcd.Config)
				return err == nil
			}); !ok {
				c.stop()
				return fmt.Errorf("3-member etcd at %s did not accept the network config within 30 s", strings.Join(c.endpoints(), ","))
			}
			// The agents move over keeping their subnets (subnet.env),
			// as hosts do when their etcd is replaced.
			for _, h := range e.topo.Hosts {
				if err := e.l.StopAgent(h.Name, syscall.SIGTERM); err != nil {
					return err
				}
				if err := e.l.SpawnAgent(h.Name, "--etcd-endpoints="+strings.Join(c.endpoints(), ",")); err != nil {
					return err
				}
			}
			for _, h := range e.topo.Hosts {
				if err := e.l.WaitAgent(ctx, h.Name); err != nil {
					return err
				}
			}
			e.cli = cli
			_, ok := waitUntil(ctx, time.Now(), 15*time.Second, func() bool { return e.healthy(ctx) == nil })
			if !ok {
				return errors.New("pods do not reach each other after moving the agents to the 3-member etcd")
			}
			return nil
		},
		build: func(ctx context.Context, e *env, p *probe) error {
			defer c.stop()
			defer cli.Close()
			var worst time.Duration
			allOK := true
			for _, role := range []string{"follower", "leader"} {
				l, err := c.leader(ctx, cli)
				if err != nil {
					return err
				}
				victim := l
				if role == "follower" {
					victim = (l + 1) % 3
				}
				p.inject()
				c.kill(victim)
				// Losing the leader is an outage of etcd itself until the
				// others elect a new one (etcd's election timeout, 1 s by
				// default); weft's part is measured from then.
				from := time.Now()
				if role == "leader" {
					took, ok := waitUntil(ctx, from, 15*time.Second, func() bool {
						nl, err := c.leader(ctx, cli)
						return err == nil && nl != victim
					})
					if !ok {
						return fmt.Errorf("no new leader within %s of SIGKILLing %s", fmtDur(took), c.names[victim])
					}
					p.row.Notes = append(p.row.Notes, fmt.Sprintf("new etcd leader elected %s after the leader's SIGKILL", fmtDur(took)))
					from = time.Now()
				}
				if err := changeArrives(ctx, e, p, from); err != nil {
					return fmt.Errorf("with the %s (%s) down: %w", role, c.names[victim], err)
				}
				p.row.Notes = append(p.row.Notes, fmt.Sprintf("%s %s down: a new lease reached every host in %s", role, c.names[victim], p.row.repairText()))
				worst = max(worst, p.row.Repair)
				allOK = allOK && p.row.Repaired
				if err := c.start(victim); err != nil {
					return err
				}
			}
			p.row.Repair, p.row.Repaired = worst, allOK
			for _, h := range e.topo.Hosts {
				sub, _ := e.l.Subnet(h.Name)
				key := e.topo.Spec.EtcdPrefix + "/subnets/" + lease.KeyName(sub, netip.Prefix{})
				resp, err := cli.Get(ctx, key)
				if err != nil {
					return err
				}
				if len(resp.Kvs) == 0 {
					p.row.Problems = append(p.row.Problems, fmt.Sprintf("%s's lease %s is gone", h.Name, sub))
					continue
				}
				if id := clientv3.LeaseID(resp.Kvs[0].Lease); id != 0 {
					ttl, err := cli.TimeToLive(ctx, id)
					if err != nil || ttl.TTL <= 0 {
						p.row.Problems = append(p.row.Problems, fmt.Sprintf("%s's lease %s has no time to live left (%v)", h.Name, sub, err))
					}
				}
			}
			return nil
		},
	}
}
