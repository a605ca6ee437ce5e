package lab

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// These methods let the fault suite (package faults) break a running lab
// the way real failures do: etcd dies and comes back on the same data, an
// agent is started with other flags, or started without waiting for it
// to become ready (a store it cannot reach at start).

// WeftBinary is the binary that runs the lab's etcd and agents.
func (l *Lab) WeftBinary() string { return l.opts.WeftBinary }

// CNIBinDir is the directory of the CNI plugins the lab's pods use.
func (l *Lab) CNIBinDir() string { return l.opts.CNIBinDir }

// etcdChild returns the newest etcd process this lab started.
func (l *Lab) etcdChild() *child {
	kids := l.childList()
	for i := len(kids) - 1; i >= 0; i-- {
		if kids[i].name == "etcd" {
			return kids[i]
		}
	}
	return nil
}

// StopEtcd sends sig to the lab's etcd and waits until it has exited.
func (l *Lab) StopEtcd(sig syscall.Signal) error {
	c := l.etcdChild()
	if c == nil {
		return fmt.Errorf("lab %s has no etcd process", l.topo.Spec.Prefix)
	}
	if err := syscall.Kill(c.pid, sig); err != nil {
		return fmt.Errorf("signal %v to etcd (pid %d): %w", sig, c.pid, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("etcd (pid %d) did not exit within 10s of %v", c.pid, sig)
	}
}

// StartEtcd starts the lab's etcd again on its data directory and
// addresses, and returns once it listens. Unlike the first start it writes
// nothing: the network config is whatever the data directory holds.
func (l *Lab) StartEtcd(ctx context.Context) error {
	if c := l.etcdChild(); c != nil {
		select {
		case <-c.exited:
		default:
			return fmt.Errorf("etcd (pid %d) is still running", c.pid)
		}
	}
	e := l.topo.Etcd
	c, err := spawn("etcd", l.topo.Underlay.NS, l.opts.WeftBinary, l.topo.EtcdArgs(), e.LogFile, e.PIDFile)
	if err != nil {
		return err
	}
	l.addChild(c)
	hostPort := strings.TrimPrefix(e.ClientURL, "http://")
	return l.poll(ctx, c, "etcd to listen on "+hostPort, func() error {
		conn, err := nsDial(ctx, l.topo.Underlay.NS, "tcp", hostPort)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// SpawnAgent starts a host's agent with extra flags after the lab's own
// (the last of a repeated flag wins) and returns without waiting for it
// to become ready; WaitAgent waits. The agent must not be running.
func (l *Lab) SpawnAgent(host string, extra ...string) error {
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
	bin, args := AgentCommand(l.opts.WeftBinary, append(l.topo.AgentArgs(h), extra...))
	c, err := spawnEnv(h.Name+" agent", h.NS, bin, args, l.topo.AgentEnv(h), h.AgentLog, h.AgentPID)
	if err != nil {
		return err
	}
	l.addChild(c)
	return nil
}

// WaitAgent waits until a host's agent (started by SpawnAgent) serves
// /readyz and has written its subnet.env, and records its subnet.
func (l *Lab) WaitAgent(ctx context.Context, host string) error {
	h, ok := l.topo.Host(host)
	if !ok {
		return fmt.Errorf("no host %s", host)
	}
	c := l.agent(host)
	if c == nil {
		return fmt.Errorf("no agent started on %s", host)
	}
	sub, sub6, err := l.waitAgent(ctx, h, c)
	if err != nil {
		return err
	}
	l.setSubnets(h.Name, sub, sub6)
	return nil
}

// AgentRunning reports whether a host's newest agent process is alive.
func (l *Lab) AgentRunning(host string) bool {
	_, ok := l.AgentPID(host)
	return ok
}

// EtcdClientAs returns a client for the lab's etcd that authenticates as
// user, for a fault that turns etcd's auth on and has to turn it off
// again; the caller closes it.
func (l *Lab) EtcdClientAs(user, password string) (*clientv3.Client, error) {
	return etcdClientAs(l.topo, l.opts.Log, []string{l.topo.Etcd.ClientURL}, user, password)
}

// EtcdClientAt returns a client for etcd members the caller runs on the
// lab's underlay (a cluster of its own), connecting from the underlay
// namespace; the caller closes it.
func (l *Lab) EtcdClientAt(endpoints []string) (*clientv3.Client, error) {
	return etcdClientAs(l.topo, l.opts.Log, endpoints, "", "")
}
