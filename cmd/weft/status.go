package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/kernel/hostfacts"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/status"
	"github.com/weftnet/weft/internal/store/open"
)

const statusHelp = `Usage: weft status [-o table|json] [--check] [agent flags]

Shows every lease in the store (etcd, or with --kube-subnet-mgr the Nodes'
podCIDRs and flannel annotations) and, for this host, whether the kernel holds
each peer's entries (routes; for vxlan also neighbour and FDB entries), and
explains every problem. It reads the store and the kernel directly, so it
works while the agent is down. Give it the agent's flags (or the same
FLANNELD_* variables) so that it finds the same store, interface and
subnet file.

  --check   also probe each peer: route lookup, ICMP echo to its pod
            gateway, its PublicIP and UDP port when that fails, and a
            full-size echo for MTU problems (needs root); and read the
            kernel settings weft depends on (neighbour table thresholds,
            forwarding, rp_filter, br_netfilter), each shortfall with its fix
  -o json   machine-readable output; see docs/status.md

Exit status: 0 when everything is in order, 1 when a problem was found or
the store could not be read, 2 for bad usage, 3 when --check found only
warnings (traffic flows, but a kernel setting will fail it as the cluster
grows or hits some of it).

Flags:
`

// statusArgs are status's own flags, beside the agent's.
type statusArgs struct {
	output  string
	check   bool
	timeout time.Duration
}

// statusFlags registers the agent's flags, bound to opts, and status's own.
func statusFlags(opts *options.Options, a *statusArgs) *flag.FlagSet {
	fs := flag.NewFlagSet("weft status", flag.ContinueOnError)
	opts.AddFlags(fs)
	fs.StringVar(&a.output, "o", "table", "output format: table or json")
	fs.BoolVar(&a.check, "check", false, "also probe every peer from this host and explain failures")
	fs.DurationVar(&a.timeout, "timeout", 20*time.Second, "give up after this long")
	return fs
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts := options.Defaults()
	var a statusArgs
	fs := statusFlags(&opts, &a)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), statusHelp)
		fs.PrintDefaults()
	}
	if err := cmdline.Parse(fs, args, stdout, stderr); err != nil {
		return cmdline.Exit(fs.Name(), err, stderr)
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return cmdline.Exit(fs.Name(), err, stderr)
	}
	if err := options.ApplyEnv(fs, os.Getenv); err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 2
	}
	if a.output != "table" && a.output != "json" {
		fmt.Fprintf(stderr, "weft status: -o %q: want table or json\n", a.output)
		return 2
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 2
	}

	// The store's notices (plain-text etcd, retries) are noise here; -v
	// shows them.
	lvl := slog.LevelError
	if opts.Verbosity > 0 {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	st, err := open.New(ctx, opts, open.Params{Log: log, ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 1
	}
	defer st.Close()

	facts := hostfacts.FromProcRoot(opts.ProcRoot)
	rep, err := status.Run(ctx, status.Options{
		Source:     st,
		Store:      open.Describe(opts),
		SubnetFile: opts.SubnetFile,
		Iface: extiface.Options{
			Ifaces:        opts.Iface,
			IfaceRegex:    opts.IfaceRegex,
			IfaceCanReach: opts.IfaceCanReach,
			PublicIP:      opts.PublicIP,
			PublicIPv6:    opts.PublicIPv6,
		},
		RenewMargin: time.Duration(opts.SubnetLeaseRenewMargin) * time.Minute,
		Check:       a.check,
		Kubernetes:  opts.KubeSubnetMgr,
		Facts:       &facts,
	})
	if err != nil {
		where := "is etcd reachable from this host? --etcd-endpoints=" + opts.EtcdEndpoints
		if opts.KubeSubnetMgr {
			where = "is the Kubernetes API reachable from this host, and --net-config-path readable? " + open.Describe(opts)
		}
		fmt.Fprintf(stderr, "weft status: %v\n(%s)\n", err, where)
		return 1
	}
	write := status.WriteTable
	if a.output == "json" {
		write = status.WriteJSON
	}
	if err := write(stdout, rep); err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 1
	}
	return statusExit(rep)
}

// statusExit is the exit status for a report (docs/status.md): 1 for any
// problem, 3 for warnings only, 0 for neither.
func statusExit(rep status.Report) int {
	switch {
	case !rep.OK:
		return 1
	case rep.WarningCount > 0:
		return 3
	}
	return 0
}
