package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// These methods let tests (and curious users of the package) act on a
// running lab the way an operator acts on real hosts: stop and start an
// agent, talk to etcd, ping from a namespace.

// NS returns the namespace of a lab member ("h1", "h1p2", "ul").
func (l *Lab) NS(name string) string {
	ns, err := ResolveNS(l.topo.Spec.Prefix, name)
	if err != nil {
		return ""
	}
	return ns
}

// AgentLog returns what a host's agent has logged so far.
func (l *Lab) AgentLog(host string) string {
	h, ok := l.topo.Host(host)
	if !ok {
		return ""
	}
	b, _ := os.ReadFile(h.AgentLog)
	return string(b)
}

// EtcdClient returns a client for the lab's etcd; the caller closes it.
func (l *Lab) EtcdClient() (*clientv3.Client, error) {
	return etcdClient(l.topo, l.opts.Log)
}

// StopAgent sends sig to a host's agent and waits until it has exited.
func (l *Lab) StopAgent(host string, sig syscall.Signal) error {
	c := l.agent(host)
	if c == nil {
		return fmt.Errorf("no running agent on %s", host)
	}
	if err := syscall.Kill(c.pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s agent (pid %d): %w", sig, host, c.pid, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s agent (pid %d) did not exit within 10s of %v", host, c.pid, sig)
	}
}

// StartAgent starts a host's agent again with the same flags and waits
// until it is ready.
func (l *Lab) StartAgent(ctx context.Context, host string) error {
	h, ok := l.topo.Host(host)
	if !ok {
		return fmt.Errorf("no host %s", host)
	}
	if c := l.agent(host); c != nil {
		select {
		case <-c.exited:
		default:
			return fmt.Errorf("%s agent (pid %d) is still running", host, c.pid)
		}
	}
	c, err := l.spawnAgent(h)
	if err != nil {
		return err
	}
	l.addChild(c)
	sub, sub6, err := l.waitAgent(ctx, h, c)
	if err != nil {
		return err
	}
	l.setSubnets(h.Name, sub, sub6)
	return nil
}

// agent returns the newest child process that is host's agent.
func (l *Lab) agent(host string) *child {
	kids := l.childList()
	for i := len(kids) - 1; i >= 0; i-- {
		if kids[i].name == host+" agent" {
			return kids[i]
		}
	}
	return nil
}

// Ping sends one ICMP echo from inside netns ns to dst and returns the
// round-trip time.
func Ping(ctx context.Context, ns string, dst netip.Addr) (time.Duration, error) {
	return pingFrom(ctx, ns, dst)
}

// AgentGet fetches a path from a host's agent health listener (/readyz,
// /metrics) from inside the host's namespace.
func (l *Lab) AgentGet(host, path string) (int, string, error) {
	h, ok := l.topo.Host(host)
	if !ok {
		return 0, "", fmt.Errorf("no host %s", host)
	}
	resp, err := nsHTTPClient(h.NS, 2*time.Second).Get("http://" + h.Health.String() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
