package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/cmdline"
)

const mainUsage = `usage: weft lab bench [flags]   (needs root, iperf3 and ping)

Builds labs (prefix <prefix>...), measures, tears them down, and prints the
tables (or JSON with -o json) on stdout; progress goes to stderr. The
defaults take about 15 minutes on 2 cores. A quick look:

  weft lab bench --rounds 1 --time 2s --leases 1000 --churn-time 5s

Sections (--only):
  datapath  pod→pod iperf3 TCP 1 and 4 streams, UDP 1400 B pps, ping RTT,
            agent CPU and RSS: baseline (no agent, static routes), the
            same with weft's rules, host-gw, vxlan, by-hand VXLAN (no
            agent), udp, wireguard, and the same WireGuard tunnels by
            standalone wireguard-go processes (no agent; when a
            wireguard-go binary is on PATH or beside weft); rounds
            interleaved
  join      3 hosts: new lease in etcd → entries in every host's kernel
  scale     one agent started facing N synthetic leases: time to program
            them all, time to ready, RSS, CPU
  churn     adds and deletes per second against that agent: lag, lost
            and stale entries
  restart   ping loss across agent restarts (SIGTERM, SIGKILL)
  rules-resync  one resync of weft's rules (iptables-nft, iptables-legacy,
            nftables) beside 10 000 kube-proxy-like rules
  udp-fast  the udp backend's offload and batched paths against kernel
            VXLAN (by hand): TCP 1 and 4 streams, agent core·s per Gbit,
            ping RTT idle and under load, loss under load

Flags:
`

// Main runs `weft lab bench ARGS...`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft lab bench", flag.ContinueOnError)
	o := DefaultOptions()
	only := strings.Join(o.Sections, ",")
	backends := strings.Join(o.Backends, ",")
	leases := joinInts(o.Leases)
	format := "table"
	var jsonOut string
	var verbose bool
	fs.StringVar(&only, "only", only, "sections to run, comma-separated")
	fs.StringVar(&backends, "backends", backends, "backends to measure, comma-separated")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "data path: rounds over all backends")
	fs.DurationVar(&o.Transfer, "time", o.Transfer, "data path: length of each iperf3 transfer")
	fs.IntVar(&o.PingCount, "pings", o.PingCount, "data path: pings per round and backend, 10 ms apart")
	fs.BoolVar(&o.IPv6, "ipv6", false, "data path: also measure over IPv6 in dual-stack labs (rows baseline-v6, host-gw-v6, vxlan-v6, wireguard-v6)")
	fs.IntVar(&o.Joins, "joins", o.Joins, "join: joins per backend")
	fs.StringVar(&leases, "leases", leases, "scale: synthetic lease counts, ascending, comma-separated")
	fs.IntVar(&o.ScaleStarts, "scale-starts", o.ScaleStarts, "scale: agent starts per lease count and backend")
	fs.IntVar(&o.ChurnLeases, "churn-leases", 0, "churn: standing synthetic leases (default: the largest --leases)")
	fs.Float64Var(&o.ChurnRate, "churn-rate", o.ChurnRate, "churn: lease adds per second, and as many deletes")
	fs.DurationVar(&o.ChurnTime, "churn-time", o.ChurnTime, "churn: how long")
	fs.StringVar(&o.Prefix, "prefix", o.Prefix, "start of the labs' prefixes (at most 7 characters)")
	fs.StringVar(&o.StateRoot, "state-dir", o.StateRoot, "parent of the labs' state directories")
	fs.StringVar(&o.WeftBinary, "weft-binary", "", "weft binary for etcd and the agents (default: this one)")
	fs.StringVar(&o.CNIBinDir, "cni-bin-dir", "", "CNI plugins directory (default $WEFT_CNI_BIN_DIR, else cni/ beside the weft binary)")
	fs.StringVar(&o.LogDir, "log-dir", "", "copy every agent's log into this directory before its lab is torn down")
	fs.StringVar(&format, "o", format, "output: table or json")
	fs.StringVar(&jsonOut, "json-out", "", "also write the JSON result to this file")
	fs.BoolVar(&verbose, "v", false, "log debug details to stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), mainUsage)
		fs.PrintDefaults()
	}
	if err := cmdline.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := cmdline.NoArgs(fs, stderr); err != nil {
		return err
	}
	if format != "table" && format != "json" {
		return cmdline.Fail(fs, stderr, fmt.Errorf("-o %q: want table or json", format))
	}
	o.Sections = splitList(only)
	o.Backends = splitList(backends)
	var err error
	if o.Leases, err = parseInts(leases); err != nil {
		return cmdline.Fail(fs, stderr, fmt.Errorf("--leases: %w", err))
	}
	if _, err := o.resolve(); err != nil {
		return cmdline.Fail(fs, stderr, err)
	}
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	o.Out = stderr

	res, runErr := Run(ctx, o)
	if res == nil {
		return runErr
	}
	var errs []error
	if jsonOut != "" {
		if err := writeJSONFile(jsonOut, res); err != nil {
			errs = append(errs, err)
		}
	}
	if format == "json" {
		errs = append(errs, WriteJSON(stdout, res))
	} else {
		errs = append(errs, WriteTables(stdout, res))
	}
	if runErr != nil {
		errs = append(errs, runErr)
	}
	return errors.Join(errs...)
}

func writeJSONFile(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write JSON result: %w", err)
	}
	if err := WriteJSON(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
