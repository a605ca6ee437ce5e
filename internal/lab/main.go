package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/internal/cmdline"
)

const mainUsage = `weft lab: a virtual cluster on this machine, in network namespaces (needs root)

Usage:
  weft lab demo   [flags]              build, check every pod pair, print the table, tear down
  weft lab up     [flags]              build and leave running
  weft lab check  [--prefix P]         run the checks against a running lab
  weft lab status [--prefix P]         show a running lab's hosts, leases and pods
  weft lab exec   [--prefix P] NAME -- CMD...
                                       run CMD in namespace NAME: ul, rt, h1, h1p2, ...
  weft lab down   [--prefix P]         tear down everything of that prefix
  weft lab bench  [flags]              build labs, measure data path, convergence, scale, restarts
  weft lab faults [flags]              build labs, inject faults under pings, print loss and repair per fault

Run "weft lab demo -h" for the build flags.
`

// runningHelp says what each command on a running lab does, for its -h.
var runningHelp = map[string]string{
	"down":   "Tears down every namespace, process and file of the lab with that prefix.",
	"check":  "Runs the demo's checks (every pod pair, the agents' health) against a running lab.",
	"status": "Shows a running lab's hosts, leases and pods.",
}

const buildUsage = `usage: weft lab %s [flags]

Hosts share one L2 segment (switch sw0, 10.4.7.0/24) unless --segments N
spreads them in blocks over N segments (10.4.7.0/24, 10.4.8.0/24, ...),
joined by a router namespace (rt, .1 on each segment) that every host uses
as its default gateway; etcd stays on segment 1.

Across segments:
  vxlan   works; DirectRouting is on unless --direct-routing=false, so
          peers on the host's own segment get a direct route and the others
          go through flannel.1. The table's PATH column shows which.
  udp     works (every pair through flannel0).
  wireguard works (every pair through flannel-wg, encrypted).
  host-gw is refused up front rather than built to fail: it routes each
          peer's subnet via the peer's own address, which the kernel
          accepts only for a directly connected neighbour, so pods behind
          the router would be unreachable. That is what vxlan's
          DirectRouting is for.

Flags:
`

// Main runs `weft lab ARGS...`. ctx is cancelled on SIGINT/SIGTERM; a
// build interrupted that way is torn down before Main returns.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "weft lab: no lab command given\n\n%s", mainUsage)
		return &cmdline.UsageError{Err: errors.New("no lab command given"), Reported: true}
	}
	cmd, rest := args[0], args[1:]
	// With stdout piped into something that exits early (`| head`), a
	// write would otherwise kill the process with SIGPIPE half-way through
	// a build or teardown and leave the lab behind. Receiving the signal
	// makes such writes fail with EPIPE instead, which the lab ignores.
	// Handlers (unlike an ignored disposition) are not inherited by the
	// lab's processes.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)

	switch cmd {
	case "demo", "up":
		return mainBuild(ctx, cmd, rest, stdout, stderr)
	case "down", "check", "status":
		return mainRunning(ctx, cmd, rest, stdout, stderr)
	case "exec":
		return mainExec(ctx, rest, stdout, stderr)
	case "bench":
		if BenchMain == nil {
			return errors.New("this build of weft has no benchmarks")
		}
		return BenchMain(ctx, rest, stdout, stderr)
	case "faults":
		if FaultsMain == nil {
			return errors.New("this build of weft has no fault suite")
		}
		return FaultsMain(ctx, rest, stdout, stderr)
	case "_etcd":
		return mainEtcd(ctx, rest, stderr)
	case "_page":
		return mainPage(ctx, rest, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return flag.ErrHelp
	default:
		fmt.Fprintf(stderr, "weft lab: unknown lab command %q\n\n%s", cmd, mainUsage)
		return &cmdline.UsageError{Err: fmt.Errorf("unknown lab command %q", cmd), Reported: true}
	}
}

// common are the flags every subcommand that names a lab takes.
type common struct {
	prefix    string
	stateRoot string
	verbose   bool
}

func (c *common) add(fs *flag.FlagSet) {
	fs.StringVar(&c.prefix, "prefix", DefaultPrefix, "name prefix of the lab's namespaces and state dir; labs with different prefixes coexist")
	fs.StringVar(&c.stateRoot, "state-dir", DefaultStateRoot, "parent of the lab's state directory")
	fs.BoolVar(&c.verbose, "v", false, "log debug details to stderr")
}

func (c *common) logger(stderr io.Writer) *slog.Logger {
	lvl := slog.LevelWarn
	if c.verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
}

func newFlagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet("weft lab "+name, flag.ContinueOnError)
}

func mainBuild(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd)
	var c common
	c.add(fs)
	var o Options
	network := DefaultNetwork.String()
	fs.IntVar(&o.Hosts, "hosts", DefaultHosts, "number of hosts")
	fs.IntVar(&o.Pods, "pods", DefaultPods, "pods per host")
	fs.StringVar(&o.Backend, "backend", DefaultBackend, "backend type written to the network config")
	fs.StringVar(&network, "network", network, "cluster network")
	fs.StringVar(&o.EtcdPrefix, "etcd-prefix", DefaultEtcdPrefix, "etcd key prefix (flannel's --etcd-prefix)")
	fs.StringVar(&o.CNIBinDir, "cni-bin-dir", "", "CNI plugins directory (default $WEFT_CNI_BIN_DIR, else cni/ beside the weft binary)")
	fs.StringVar(&o.WeftBinary, "weft-binary", "", "weft binary that runs etcd and the agents (default: this one)")
	fs.IntVar(&o.Segments, "segments", 1, "L2 segments the hosts are spread over, joined by a router (host-gw needs 1)")
	fs.BoolVar(&o.IPMasq, "ip-masq", false, "run the agents with --ip-masq and add an internet host (10.4.7.99) outside the cluster: pod→pod keeps its source, pod→internet is masqueraded")
	fs.BoolVar(&o.DirectRouting, "direct-routing", false, `vxlan's "DirectRouting": true (default: on for vxlan with --segments > 1)`)
	fs.StringVar(&o.WireGuardMode, "wireguard-mode", "", `wireguard's "Mode": separate (flannel's default: flannel-wg, and flannel-wg-v6 for IPv6), or auto, ipv4 or ipv6 (flannel-wg alone carries both families)`)
	fs.StringVar(&o.IPFamily, "ip-family", FamilyIPv4, `address families: ipv4; dual (the underlay also gets IPv6 ULAs, fd00:10:4:7::21 beside 10.4.7.21, the network config "EnableIPv6" with --ipv6-network, pods an address of each family, and every check runs over both); ipv6 (an IPv6-only cluster, "EnableIPv4": false, on an IPv6-only underlay; needs --store kube, since etcd mode has no IPv6-only lease, as in flannel)`)
	network6 := DefaultIPv6Network.String()
	fs.StringVar(&network6, "ipv6-network", network6, "the pods' IPv6 network (IPv6Network) with --ip-family dual or ipv6")
	addKubeFlags(fs, &o)
	tuneNeigh := true
	fs.BoolVar(&tuneNeigh, "tune-neigh", true, "raise the kernel's neighbour-table thresholds (net.ipv4.neigh.default.gc_thresh1/2/3, and net.ipv6's with --ip-family dual or ipv6; shared by all namespaces) to fit the lab; restored when the last lab goes down")
	pageAddr := "127.0.0.1:8470"
	if cmd == "demo" {
		pageAddr = ""
	}
	fs.StringVar(&o.PageAddr, "page-addr", pageAddr, `where the lab page (every host's row, the N×N matrix) listens, in the root namespace; port 0 picks a free one; "" for none`)
	if cmd == "demo" {
		fs.BoolVar(&o.Keep, "keep", false, "leave the lab running after the checks")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), buildUsage, cmd)
		fs.PrintDefaults()
	}
	if err := cmdline.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return err
	}
	// DirectRouting is what a cluster spanning segments runs vxlan with;
	// an explicit --direct-routing=false shows everything through VXLAN.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["direct-routing"] && o.Backend == "vxlan" && o.Segments > 1 {
		o.DirectRouting = true
	}
	p, err := netip.ParsePrefix(network)
	if err != nil {
		return cmdline.Fail(fs, stderr, fmt.Errorf("--network: %w", err))
	}
	o.Network = p
	if o.IPv6Network, err = netip.ParsePrefix(network6); err != nil {
		return cmdline.Fail(fs, stderr, fmt.Errorf("--ipv6-network: %w", err))
	}
	o.KeepNeighThresholds = !tuneNeigh
	o.Prefix, o.StateRoot = c.prefix, c.stateRoot
	o.Out, o.Log = stdout, c.logger(stderr)

	if cmd == "demo" {
		_, err := Demo(ctx, o)
		return err
	}
	l, err := Up(ctx, o)
	if err != nil {
		return err
	}
	printUsage(stdout, l.Topology())
	return nil
}

func mainRunning(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd)
	var c common
	c.add(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weft lab %s [--prefix P] [--state-dir DIR] [-v]\n\n%s\n\nFlags:\n", cmd, runningHelp[cmd])
		fs.PrintDefaults()
	}
	if err := cmdline.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return err
	}
	spec := Spec{Prefix: c.prefix, StateRoot: c.stateRoot}
	log := c.logger(stderr)
	switch cmd {
	case "down":
		// A fresh context: a Ctrl-C must not leave half a lab behind.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		if err := DownTo(dctx, spec, log, stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lab %s torn down\n", c.prefix)
		return nil
	case "check":
		return CheckRunning(ctx, spec, stdout)
	default:
		return Status(spec, stdout)
	}
}

func mainExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("exec")
	var c common
	c.add(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: weft lab exec [--prefix P] NAME -- CMD [ARGS...]   (NAME: ul, h1, h1p2, ...)\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := cmdline.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1:1], rest[2:]...)
	}
	if len(rest) < 2 {
		return cmdline.Fail(fs, stderr, errors.New("exec needs a namespace and a command"))
	}
	ns, err := ResolveNS(c.prefix, rest[0])
	if err != nil {
		return err
	}
	return Exec(ctx, ns, rest[1:], stdout, stderr)
}

func mainEtcd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("_etcd")
	dataDir := fs.String("data-dir", "", "etcd data directory")
	client := fs.String("listen-client", "", "client URL")
	peer := fs.String("listen-peer", "", "peer URL")
	if err := cmdline.Parse(fs, args, stderr, stderr); err != nil {
		return err
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return runEtcd(ctx, *dataDir, *client, *peer, log)
}

func mainPage(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("_page")
	var c common
	c.add(fs)
	addr := fs.String("addr", "127.0.0.1:8470", "listen address")
	if err := cmdline.Parse(fs, args, stderr, stderr); err != nil {
		return err
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return runPage(ctx, Spec{Prefix: c.prefix, StateRoot: c.stateRoot}, *addr, log)
}
