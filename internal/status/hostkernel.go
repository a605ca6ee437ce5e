package status

import (
	"net/netip"

	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/kernel/neightable"
)

// With --check, status also reads the kernel settings the agent watches
// (package hostfacts): the neighbour table's room for this host's peers
// and pods, forwarding, br_netfilter in Kubernetes mode, rp_filter under
// DirectRouting. A finding of severity error is a problem like any other;
// a warning is listed apart, and `weft status` exits 3 when warnings are
// all it found. A setting status cannot read (in a child network
// namespace the neighbour thresholds do not exist) is passed over: the
// agent warns about it, and nothing is known to be wrong.

// kernelSample is what status reads of the neighbour tables, once before
// the probes and once after.
type kernelSample struct {
	family     neightable.Family
	thresholds neightable.Thresholds
	threshOK   bool
	stats      neightable.Stats
	statsOK    bool
}

func sampleTables(read hostfacts.Reader, ipv6 bool) []kernelSample {
	fams := []neightable.Family{neightable.IPv4}
	if ipv6 {
		fams = append(fams, neightable.IPv6)
	}
	out := make([]kernelSample, 0, len(fams))
	for _, f := range fams {
		s := kernelSample{family: f}
		var err error
		s.thresholds, err = read.Thresholds(f)
		s.threshOK = err == nil
		s.stats, err = read.Stats(f)
		s.statsOK = err == nil
		out = append(out, s)
	}
	return out
}

// hostFindings decides from what was read: the neighbour entries this host
// needs against each table's thresholds, a table_fulls counter that rose
// between before and after (the probes themselves resolve every peer, so
// a table that cannot hold them overflows right then), and the other
// facts. Pure.
func hostFindings(in Inputs, r Report, before, after []kernelSample, facts []hostfacts.Finding) []hostfacts.Finding {
	var out []hostfacts.Finding
	for i, s := range after {
		n := hostNeed(in, r, s.family)
		if s.threshOK {
			out = append(out, hostfacts.NeighFindings(s.family, n, s.thresholds)...)
		}
		if i < len(before) && before[i].statsOK && s.statsOK && s.threshOK && s.stats.TableFulls > before[i].stats.TableFulls {
			out = append(out, hostfacts.TableFullFinding(s.family, s.stats.TableFulls-before[i].stats.TableFulls, s.thresholds, n.Total(), s.stats))
		}
	}
	return append(out, facts...)
}

// hostNeed counts what one family's neighbour table of this host must
// hold, as the agent does.
func hostNeed(in Inputs, r Report, f neightable.Family) hostfacts.Need {
	ni := hostfacts.NeedInput{
		Family:      f,
		Leases:      in.Leases,
		Routes:      in.Kernel.Routes,
		RoutesKnown: true,
	}
	d, known := backends.Lookup(in.Config.BackendType)
	if known {
		ni.LeaseTypes = d.LeaseTypes
	}
	if f == neightable.IPv6 {
		ni.Own, _ = netip.ParsePrefix(r.Host.IPv6Subnet)
		ni.OwnPublicIP, ni.Network = in.Ext.PublicIPv6, in.Config.IPv6Network
		if known && !d.IPv6 {
			ni.LeaseTypes = []string{} // no IPv6 traffic to the peers
		}
	} else {
		ni.Own, _ = netip.ParsePrefix(r.Host.Subnet)
		ni.OwnPublicIP, ni.Network = in.PublicIP, in.Config.Network
	}
	return hostfacts.NeedFor(ni)
}

// factsHost is what hostfacts.Check looks at for this host. The MTU is
// left out: status compares it itself, against subnet.env and cni0.
func factsHost(in Inputs, kube bool) hostfacts.Host {
	h := hostfacts.Host{IPv6: in.Config.EnableIPv6, NoIPv4: !in.Config.EnableIPv4, Kube: kube}
	if _, exp, bad := expectation(in.Config, in.Ext); bad == nil {
		h.RPFilterDevs = hostfacts.RPFilterDevices(exp.DirectRouting, exp.Overlays, in.Ext.Name)
	}
	return h
}

// addFindings puts each finding into r: errors among the problems about
// this host, warnings among the warnings; then it recounts.
func addFindings(r *Report, fs []hostfacts.Finding) {
	for _, f := range fs {
		p := Problem{Code: f.Code, Message: f.Message, Fix: f.Fix}
		if f.Sysctl != "" {
			p.Have = f.Sysctl + " = " + orNone(f.Current)
			if f.Suggested != "" {
				p.Want = f.Sysctl + " = " + f.Suggested
			}
		}
		if p.Fix != "" && isNeighCode(f.Code) {
			p.Fix += " (or run weft with --raise-neigh-gc-thresh)"
		}
		if f.Severity == hostfacts.Error {
			r.Problems = append(r.Problems, p)
		} else {
			r.Warnings = append(r.Warnings, p)
		}
	}
	r.WarningCount = len(r.Warnings)
	finish(r)
}

func isNeighCode(code string) bool {
	return code == hostfacts.CodeNeighThresh2 || code == hostfacts.CodeNeighThresh3 || code == hostfacts.CodeNeighTableFull
}

func orNone(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}
