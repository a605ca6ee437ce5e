package faults

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/version"
)

const mainUsage = `usage: weft lab faults [flags]   (needs root, iptables, nft, ping, and
the etcd binary of make kube-tools for the 3-member cluster row)

Builds labs (prefix <prefix>v, g, c, d, r, e), pings between the pods of
different hosts every 10 ms, injects each fault with real parts (etcd
killed or cut off, kernel entries deleted or changed, stray leases,
Docker's nat rule, ...), and prints one row per fault: packets lost, time
to repair, PASS/FAIL against the goal (no loss the fault does not force,
repair within 1 s, a log line naming the cause) and that log line. Rows
listed as known gaps (KnownGaps, with the issue item that fixes them) do
not fail the run. About 3 minutes with the default 60 s etcd outage.

Flags:
`

// Main runs `weft lab faults ARGS...`. It fails when a row fails the goal
// and is not a known gap, or when the suite could not run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft lab faults", flag.ContinueOnError)
	o := Options{Prefix: "wf", StateRoot: "/run/weft-lab", EtcdBlock: 60 * time.Second}
	var only, doc string
	require := os.Getenv("WEFT_FAULTS_REQUIRE")
	var verbose bool
	fs.StringVar(&o.Prefix, "prefix", o.Prefix, "start of the labs' prefixes (at most 11 characters)")
	fs.StringVar(&o.StateRoot, "state-dir", o.StateRoot, "parent of the labs' state directories")
	fs.StringVar(&o.WeftBinary, "weft-binary", "", "weft binary for etcd and the agents (default: this one)")
	fs.StringVar(&o.CNIBinDir, "cni-bin-dir", "", "CNI plugins directory (default $WEFT_CNI_BIN_DIR, else cni/ beside the weft binary)")
	fs.DurationVar(&o.EtcdBlock, "etcd-block", o.EtcdBlock, "how long the etcd-blocked row keeps etcd unreachable")
	fs.StringVar(&only, "only", "", "run only the rows whose ID contains one of these, comma-separated")
	fs.StringVar(&require, "require", require, `known-gap rows to hold to the goal after all, comma-separated IDs or "all" (default $WEFT_FAULTS_REQUIRE)`)
	fs.StringVar(&doc, "write-doc", "", "write the table into this markdown file between its faults markers (make faults: docs/reliability.md)")
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
	o.Only = splitList(only)
	o.Gaps = Gaps(require)
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	o.Out = stderr

	start := time.Now()
	rows, runErr := Run(ctx, o)
	elapsed := time.Since(start)
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	fmt.Fprintln(stdout)
	errs = append(errs, WriteTable(stdout, rows))
	fmt.Fprintf(stdout, "\n%d rows in %.0f s\n", len(rows), elapsed.Seconds())
	if doc != "" && runErr == nil {
		if err := writeDoc(doc, rows, elapsed); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(stdout, "table written into %s\n", doc)
		}
	}
	var failed []string
	for _, r := range rows {
		if r.Fails() {
			failed = append(failed, r.ID)
		}
	}
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("%d fault rows missed the goal: %s", len(failed), strings.Join(failed, ", ")))
	}
	return errors.Join(errs...)
}

func writeDoc(path string, rows []Row, elapsed time.Duration) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	table := MarkdownTable(rows) + fmt.Sprintf("\n%d rows in %.0f s, weft %s, %s, %d CPUs.\n",
		len(rows), elapsed.Seconds(), version.Version, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU())
	if err := atomicfile.Write(path, []byte(SpliceDoc(string(old), table)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
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
