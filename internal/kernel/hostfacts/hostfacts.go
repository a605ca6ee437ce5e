// Package hostfacts is the one place that knows the kernel settings weft
// stands on and says, in an operator's words, which of them are wrong on
// this host: IP forwarding, br_netfilter in Kubernetes mode, rp_filter
// where it would drop the fabric's traffic, the pods' MTU against the
// underlay's, and the neighbour table's room for this host's peers
// (neigh.go).
//
// Everything is read through a Reader rooted like /proc, so that tests
// hand it a fake tree and never touch host-wide values. The decisions are
// pure functions of what was read. A fact that cannot be read (a container
// without /proc/sys, a kernel without the parameter, a child network
// namespace that does not see the neighbour thresholds) is returned as an
// error for the caller to warn about once; it is never a finding, because
// nothing is known to be wrong.
package hostfacts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/kernel/neightable"
	"github.com/weftnet/weft/internal/sysctl"
)

// Severity says how much a finding hurts.
type Severity string

const (
	// Warn: the fabric works, but some traffic may suffer, or will once
	// the cluster grows.
	Warn Severity = "warn"
	// Error: traffic is being dropped, or is dropped as soon as this host
	// uses what it was given.
	Error Severity = "error"
)

// Finding codes. They appear in logs and in `weft status -o json` and
// never change meaning.
const (
	CodeIPForward      = "ip_forward"              // forwarding is off: no pod traffic leaves or enters the host
	CodeBridgeNF       = "bridge_nf_call_iptables" // bridged pod traffic bypasses kube-proxy's rules
	CodeBrNetfilter    = "br_netfilter"            // the module is not loaded (Kubernetes mode)
	CodeRPFilter       = "rp_filter"               // strict reverse-path filtering on a device the fabric's traffic arrives on
	CodeUnderlayMTU    = "underlay_mtu"            // pods' packets no longer fit the underlay once encapsulated
	CodeNeighThresh2   = "neigh_gc_thresh2"        // the neighbour table needs more than gc_thresh2: entries in use are collected
	CodeNeighThresh3   = "neigh_gc_thresh3"        // the neighbour table needs more than gc_thresh3: the kernel refuses entries
	CodeNeighTableFull = "neigh_table_full"        // the kernel refused neighbour entries (table_fulls rose)
)

// Finding is one kernel fact that is wrong for weft on this host.
type Finding struct {
	Code     string
	Severity Severity
	// Sysctl is the parameter at fault, in a form `sysctl -w` accepts
	// (slashes when a device name holds a dot); "" when no parameter is.
	Sysctl string
	// Current is its value now ("" when absent); Suggested the value that
	// fixes it ("" when no value does).
	Current, Suggested string
	// Message says in one line what is wrong and what it does to traffic.
	Message string
	// Fix is the command or step that puts it right.
	Fix string
}

// Key identifies the finding across checks, so that a caller can tell a
// new finding from one it already reported. The two threshold findings of
// one neighbour table share a key: a table that goes from short of
// gc_thresh2 to short of gc_thresh3 is one problem getting worse, not one
// solved and another begun.
func (f Finding) Key() string {
	if f.Code == CodeNeighThresh2 || f.Code == CodeNeighThresh3 {
		return "neigh_gc_thresh " + strings.TrimRight(f.Sysctl, "0123456789")
	}
	return f.Code + " " + f.Sysctl
}

// Reader reads kernel facts from a /proc-like tree.
type Reader struct {
	// Sysctl reads the parameters (/proc/sys).
	Sysctl sysctl.FS
	// StatDir holds the neighbour tables' statistics; "" means
	// /proc/net/stat.
	StatDir string
	// NetDir holds the devices' attributes; "" means /sys/class/net.
	NetDir string
}

// FromProcRoot reads below root as if it were /proc: parameters from
// root/sys, statistics from root/net/stat when that exists and from
// /proc/net/stat otherwise. "" and "/proc" are the host's; devices are
// always read from /sys/class/net.
//
// The fallback is for containers: the runtime mounts /proc/sys read-only,
// so a DaemonSet that lets weft raise thresholds mounts the host's
// /proc/sys/net below another root, while /proc/net/stat, which follows
// the reader's network namespace, is already the host's with hostNetwork
// (and a bind mount of it would follow whichever process made it).
func FromProcRoot(root string) Reader {
	if root == "" || filepath.Clean(root) == "/proc" {
		return Reader{}
	}
	r := Reader{Sysctl: sysctl.FS{Root: filepath.Join(root, "sys")}}
	if st, err := os.Stat(filepath.Join(root, "net", "stat")); err == nil && st.IsDir() {
		r.StatDir = filepath.Join(root, "net", "stat")
	}
	return r
}

// Thresholds reads a family's neighbour-table thresholds.
func (r Reader) Thresholds(f neightable.Family) (neightable.Thresholds, error) {
	return neightable.ReadThresholds(r.Sysctl, f)
}

// Stats reads a family's neighbour-table statistics.
func (r Reader) Stats(f neightable.Family) (neightable.Stats, error) {
	return neightable.ReadStats(r.StatDir, f)
}

// MTU reads a device's MTU.
func (r Reader) MTU(dev string) (int, error) {
	dir := r.NetDir
	if dir == "" {
		dir = "/sys/class/net"
	}
	b, err := os.ReadFile(filepath.Join(dir, dev, "mtu"))
	if err != nil {
		return 0, fmt.Errorf("read the MTU of %s: %w", dev, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read the MTU of %s: %w", dev, err)
	}
	return n, nil
}

// Host says which facts matter for this host's part in the fabric.
type Host struct {
	// IPv6 checks IPv6 forwarding too (the network config's EnableIPv6).
	IPv6 bool
	// NoIPv4 skips what only IPv4 needs (forwarding, the bridge's
	// iptables hook): the network is IPv6-only ("EnableIPv4": false).
	NoIPv4 bool
	// Kube checks what Kubernetes needs of the bridge (kube-proxy's rules
	// must see traffic between pods on cni0).
	Kube bool
	// RPFilterDevs are the devices on which strict reverse-path filtering
	// drops the fabric's traffic (see RPFilterDevices).
	RPFilterDevs []string
	// Underlay, UnderlayMTU, PodMTU and Overhead compare the MTU the
	// backend gave pods, plus what its encapsulation adds, with what the
	// underlay device carries now. Skipped when PodMTU or UnderlayMTU is 0.
	Underlay    string
	UnderlayMTU int
	PodMTU      int
	Overhead    int
}

// RPFilterDevices are the devices where strict reverse-path filtering
// (rp_filter=1) would drop the fabric's traffic. Strict mode drops a packet
// that arrives on a device other than the one the reply would leave by.
// For host-gw, udp and plain vxlan that never happens: a peer's pods are
// routed back out of exactly the device their packets come in on (the
// external interface, flannel0, flannel.<VNI>). Only vxlan's
// DirectRouting makes paths asymmetric: each host decides by its own
// routing table whether a peer is directly reachable, so when two hosts
// disagree (different prefix lengths on the segment, a host route, the
// moment one of them re-evaluates after a change) pod packets come in
// encapsulated on the vxlan device while this host routes the reply out of
// the external interface, or the other way round, and strict mode drops
// them silently. So with directRouting the answer is the overlay devices
// and the external interface; otherwise none.
func RPFilterDevices(directRouting bool, overlays []string, ext string) []string {
	if !directRouting {
		return nil
	}
	devs := append([]string(nil), overlays...)
	if ext != "" {
		devs = append(devs, ext)
	}
	return devs
}

// Check reads the facts h asks for and returns the findings, and one error
// per fact that could not be read.
func (r Reader) Check(h Host) ([]Finding, []error) {
	var fs []Finding
	var errs []error
	add := func(f *Finding, err error) {
		if err != nil {
			errs = append(errs, err)
		}
		if f != nil {
			fs = append(fs, *f)
		}
	}
	if !h.NoIPv4 {
		add(r.forwarding("net.ipv4.ip_forward", "IPv4"))
	}
	if h.IPv6 {
		add(r.forwarding("net.ipv6.conf.all.forwarding", "IPv6"))
	}
	if h.Kube {
		if !h.NoIPv4 {
			add(r.bridgeNF("net.bridge.bridge-nf-call-iptables"))
		}
		if h.IPv6 {
			add(r.bridgeNF("net.bridge.bridge-nf-call-ip6tables"))
		}
	}
	if len(h.RPFilterDevs) > 0 {
		f, err := r.rpFilter(h.RPFilterDevs)
		fs = append(fs, f...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if f := MTUFinding(h); f != nil {
		fs = append(fs, *f)
	}
	return fs, errs
}

func (r Reader) forwarding(name, family string) (*Finding, error) {
	v, err := r.Sysctl.Get(name)
	if err != nil {
		return nil, err
	}
	if v == "1" {
		return nil, nil
	}
	return &Finding{
		Code: CodeIPForward, Severity: Error, Sysctl: name, Current: v, Suggested: "1",
		Message: fmt.Sprintf("%s forwarding is off (%s=%s): this host forwards no pod traffic to or from other hosts", family, name, v),
		Fix:     "sysctl -w " + name + "=1",
	}, nil
}

// bridgeNF checks one of br_netfilter's switches. Without them, traffic
// between two pods on cni0 is bridged past iptables, so a pod reaching a
// Service whose endpoint is on the same host gets replies from the pod's
// own address instead of the Service's, and drops them.
func (r Reader) bridgeNF(name string) (*Finding, error) {
	v, err := r.Sysctl.Get(name)
	if errors.Is(err, sysctl.ErrMissing) {
		return &Finding{
			Code: CodeBrNetfilter, Severity: Warn, Sysctl: name, Suggested: "1",
			Message: "the br_netfilter module is not loaded: traffic between pods on cni0 bypasses kube-proxy's rules, so a pod cannot reach a Service whose endpoint is on the same host",
			Fix:     "modprobe br_netfilter && sysctl -w " + name + "=1 (and add br_netfilter to /etc/modules-load.d/)",
		}, nil
	}
	if err != nil {
		return nil, err
	}
	if v == "1" {
		return nil, nil
	}
	return &Finding{
		Code: CodeBridgeNF, Severity: Warn, Sysctl: name, Current: v, Suggested: "1",
		Message: fmt.Sprintf("%s=%s: traffic between pods on cni0 bypasses kube-proxy's rules, so a pod cannot reach a Service whose endpoint is on the same host", name, v),
		Fix:     "sysctl -w " + name + "=1",
	}, nil
}

// rpFilter reports each device whose effective rp_filter is strict. The
// kernel applies the larger of conf.all and conf.<dev>, so 2 (loose) on
// the device is the fix whatever conf.all says. A device that does not
// exist (yet) is passed over.
func (r Reader) rpFilter(devs []string) ([]Finding, error) {
	all, err := r.Sysctl.GetInt("net.ipv4.conf.all.rp_filter")
	if err != nil {
		return nil, err
	}
	var fs []Finding
	for _, dev := range devs {
		name := DeviceSysctl(dev, "rp_filter")
		v, err := r.Sysctl.GetInt(name)
		if errors.Is(err, sysctl.ErrMissing) {
			continue
		}
		if err != nil {
			return fs, err
		}
		if max(all, v) != 1 {
			continue
		}
		cur := strconv.FormatInt(v, 10)
		if v != 1 {
			cur += " (net.ipv4.conf.all.rp_filter=1 applies: the kernel uses the larger)"
		}
		fs = append(fs, Finding{
			Code: CodeRPFilter, Severity: Warn, Sysctl: name, Current: cur, Suggested: "2",
			Message: fmt.Sprintf("strict reverse-path filtering on %s: with DirectRouting, a peer that decides differently whether this host is directly reachable sends pod traffic in on the other device, and the kernel drops it silently", dev),
			Fix:     "sysctl -w " + name + "=2",
		})
	}
	return fs, nil
}

// DeviceSysctl names a per-device IPv4 parameter: dotted, or with slashes
// when the device's name holds a dot ("net/ipv4/conf/flannel.1/rp_filter"),
// as sysctl(8) and sysctl.FS both accept.
func DeviceSysctl(dev, param string) string {
	if strings.Contains(dev, ".") {
		return "net/ipv4/conf/" + dev + "/" + param
	}
	return "net.ipv4.conf." + dev + "." + param
}

// MTUFinding reports pods whose full-size packets, encapsulated, no longer
// fit the underlay: the underlay's MTU was lowered after the backend chose
// the pods' (a DHCP option, a cloud agent, an operator). A larger underlay
// is no finding: pods then use smaller packets than they could, which
// costs a little throughput and drops nothing.
func MTUFinding(h Host) *Finding {
	if h.PodMTU == 0 || h.UnderlayMTU == 0 || h.PodMTU+h.Overhead <= h.UnderlayMTU {
		return nil
	}
	want := h.UnderlayMTU - h.Overhead
	size := fmt.Sprintf("pod MTU %d", h.PodMTU)
	if h.Overhead > 0 {
		size += fmt.Sprintf(" + %d bytes of encapsulation", h.Overhead)
	}
	return &Finding{
		Code: CodeUnderlayMTU, Severity: Error,
		Current:   fmt.Sprintf("%s, %s's MTU %d", size, h.Underlay, h.UnderlayMTU),
		Suggested: fmt.Sprintf("pod MTU %d", want),
		Message: fmt.Sprintf("%s no longer fits %s's MTU %d (it changed after weft started): pods' full-size packets are dropped, so large transfers stall while pings work",
			size, h.Underlay, h.UnderlayMTU),
		Fix: fmt.Sprintf("restart weft (it gives pods MTU %d), then recreate this host's pods", want),
	}
}
