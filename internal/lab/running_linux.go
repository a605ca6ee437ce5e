package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/subnetenv"
)

// loadRunning returns the topology and state of a lab built by an earlier
// `weft lab up`.
func loadRunning(spec Spec) (Topology, state, error) {
	topo, err := Plan(spec)
	if err != nil {
		return Topology{}, state{}, err
	}
	st, err := readState(topo.StateDir)
	if err != nil {
		return Topology{}, state{}, fmt.Errorf("lab %s is not up (%w)", topo.Spec.Prefix, err)
	}
	topo, err = Plan(recordedSpec(spec, st))
	return topo, st, err
}

// CheckRunning runs the checks against a lab left running by `weft lab up`
// and prints the table; the error is non-nil when a check failed.
func CheckRunning(ctx context.Context, spec Spec, out io.Writer) error {
	topo, st, err := loadRunning(spec)
	if err != nil {
		return err
	}
	res, err := checkWatched(ctx, topo, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if err := WriteReport(out, res); err != nil {
		return err
	}
	return res.Err()
}

// networkNote is ", network <IPv4 network>" for the labs' first lines;
// nothing for an IPv6-only lab, whose layoutNote names its IPv6 network.
func networkNote(s Spec) string {
	if !s.HasIPv4() {
		return ""
	}
	return ", network " + s.Network.String()
}

// Status prints what of a running lab is there: namespaces, processes,
// leases and pod addresses.
func Status(spec Spec, out io.Writer) error {
	topo, st, err := loadRunning(spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "lab %s: %d hosts × %d pods, backend %s%s%s, up since %s\n\n",
		topo.Spec.Prefix, len(topo.Hosts), topo.Spec.Pods, topo.Spec.Backend, networkNote(topo.Spec),
		layoutNote(topo.Spec), st.Created.Local().Format("15:04:05"))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNETNS\tADDRESS\tPROCESS\tSUBNET")
	fmt.Fprintf(tw, "ul\t%s\t%s\t%s\t-\n", nsState(topo.Underlay.NS), prefixesText(topo.Underlay.Addr, topo.Underlay.Addr6), underlayProcs(topo))
	if rt := topo.Router; rt.NS != "" {
		var legs []string
		for _, leg := range rt.Legs {
			legs = append(legs, prefixesText(leg.Addr, leg.Addr6))
		}
		fmt.Fprintf(tw, "rt\t%s\t%s\trouter\t-\n", nsState(rt.NS), strings.Join(legs, " "))
	}
	for _, h := range topo.Hosts {
		sub := "-"
		if env, err := subnetenv.Read(h.SubnetFile); err == nil {
			sub = prefixesText(env.Subnet, env.IPv6Subnet)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\tagent %s\t%s\n", h.Name, nsState(h.NS), prefixesText(h.Addr, h.Addr6), procStatus(h.AgentPID), sub)
		for _, p := range h.Pods {
			addr := "-"
			if a := addrsText(netip.PrefixFrom(st.PodIPs[p.Name], 0), netip.PrefixFrom(st.PodIPv6s[p.Name], 0)); a != "" {
				addr = a
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\n", p.Name, nsState(p.NS), addr)
		}
	}
	return tw.Flush()
}

func nsState(name string) string {
	if netns.Exists(name) {
		return name
	}
	return name + " (missing)"
}

func procStatus(pidFile string) string {
	pid, ok, err := readPIDFile(pidFile)
	switch {
	case err != nil:
		return "unknown"
	case pid == 0:
		return "not started"
	case !ok:
		return fmt.Sprintf("pid %d exited", pid)
	default:
		return fmt.Sprintf("pid %d", pid)
	}
}

// Exec runs argv inside the named namespace (ip netns exec), attached to
// this process's stdin and the given outputs.
func Exec(ctx context.Context, ns string, argv []string, stdout, stderr io.Writer) error {
	if !netns.Exists(ns) {
		return fmt.Errorf("netns %s does not exist (is the lab up?)", ns)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s in netns %s: %w", argv[0], ns, err)
	}
	return nil
}
