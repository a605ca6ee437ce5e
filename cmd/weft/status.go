package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/extiface"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/status"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

const statusHelp = `Usage: weft status [-o table|json] [--check] [agent flags]

Shows every lease in the store and, for this host, whether the kernel holds
each peer's entries (routes; for vxlan also neighbour and FDB entries), and
explains every problem. It reads the store and the kernel directly, so it
works while the agent is down. Give it the agent's flags (or the same
FLANNELD_* variables) so that it finds the same store, interface and
subnet file.

  --check   also probe each peer: route lookup, ICMP echo to its pod
            gateway, its PublicIP and UDP port when that fails, and a
            full-size echo for MTU problems (needs root)
  -o json   machine-readable output; see docs/status.md

Exit status: 0 when everything is in order, 1 when a problem was found or
the store could not be read, 2 for bad usage.

Flags:
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts := options.Defaults()
	fs := flag.NewFlagSet("weft status", flag.ContinueOnError)
	opts.AddFlags(fs)
	output := fs.String("o", "table", "output format: table or json")
	check := fs.Bool("check", false, "also probe every peer from this host and explain failures")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after this long")
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
	if err := applyAgentEnv(fs, os.Getenv); err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "weft status: -o %q: want table or json\n", *output)
		return 2
	}
	if opts.KubeSubnetMgr {
		fmt.Fprintln(stderr, "weft status: reads leases from etcd; --kube-subnet-mgr is not supported yet")
		return 2
	}
	if opts.SubnetLeaseRenewMargin < 1 || opts.SubnetLeaseRenewMargin > 1439 {
		fmt.Fprintf(stderr, "weft status: --subnet-lease-renew-margin=%d: must be between 1 and 1439 minutes\n", opts.SubnetLeaseRenewMargin)
		return 2
	}

	// The store's notices (plain-text etcd, retries) are noise here; -v
	// shows them.
	lvl := slog.LevelError
	if opts.Verbosity > 0 {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := etcdstore.New(ctx, etcdstore.Options{
		Endpoints: opts.Endpoints(),
		Prefix:    opts.EtcdPrefix,
		CertFile:  opts.EtcdCertfile,
		KeyFile:   opts.EtcdKeyfile,
		CAFile:    opts.EtcdCAFile,
		Username:  opts.EtcdUsername,
		Password:  opts.EtcdPassword,
		Log:       log.With("store", "etcd"),
	})
	if err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 1
	}
	defer st.Close()

	rep, err := status.Run(ctx, status.Options{
		Source:     st,
		Store:      "etcd " + strings.Join(opts.Endpoints(), ",") + " " + strings.TrimRight(opts.EtcdPrefix, "/"),
		SubnetFile: opts.SubnetFile,
		Iface: extiface.Options{
			Ifaces:        opts.Iface,
			IfaceRegex:    opts.IfaceRegex,
			IfaceCanReach: opts.IfaceCanReach,
			PublicIP:      opts.PublicIP,
		},
		RenewMargin: time.Duration(opts.SubnetLeaseRenewMargin) * time.Minute,
		Check:       *check,
	})
	if err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n(is etcd reachable from this host? --etcd-endpoints=%s)\n", err, opts.EtcdEndpoints)
		return 1
	}
	write := status.WriteTable
	if *output == "json" {
		write = status.WriteJSON
	}
	if err := write(stdout, rep); err != nil {
		fmt.Fprintf(stderr, "weft status: %v\n", err)
		return 1
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// applyAgentEnv fills the agent's flags that the command line left unset
// from their FLANNELD_* variables, as the agent does, and leaves status's
// own flags alone.
func applyAgentEnv(fs *flag.FlagSet, getenv func(string) string) error {
	agent := flag.NewFlagSet("", flag.ContinueOnError)
	scratch := options.Defaults()
	scratch.AddFlags(agent)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	agent.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "version" {
			return
		}
		v := getenv(options.EnvName(f.Name))
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", options.EnvName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}
