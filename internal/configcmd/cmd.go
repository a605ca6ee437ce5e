package configcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/open"
)

// Env is the command's surroundings.
type Env struct {
	Getenv         func(string) string // FLANNELD_* variables; nil means os.Getenv
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

const usage = `Usage:
  weft config put [flags] '<json>'    validate a network config and store it at <prefix>/config
  weft config put [flags] -f FILE     ... read from FILE ("-f -" or a lone "-" reads stdin)
  weft config get [flags]             print the stored config
  weft config get --parsed            ... and what it means with flannel's defaults filled in
  weft config get -o json             ... as one JSON object: key, stored config, effective config
  weft config put --dry-run ...       validate and show, without connecting to etcd

put refuses an invalid config, says why and writes nothing. The store flags are
the agent's and also read FLANNELD_* variables (FLANNELD_ETCD_ENDPOINTS, ...).
With --kube-subnet-mgr, get shows the --net-config-path file (net-conf.json of
the DaemonSet's ConfigMap); change that ConfigMap to change the config, after
checking it with put --dry-run.

Example:
  weft config put --etcd-endpoints=http://10.4.7.12:2379 \
      '{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}'
`

// PutOptions tune Put.
type PutOptions struct {
	DryRun bool // validate and show, store nothing
}

// Put validates raw (surrounding whitespace trimmed) exactly as an agent
// will when it reads it (backends.ParseConfig: the network fields, the
// backend's name and its options), and stores it unless it is invalid or o.DryRun.
// It reports on out what it stored and what that means, and on warn what
// looks wrong though valid, including a change of Network or backend that
// running agents will not follow. An invalid config is returned as an
// error giving the reason, and nothing is written.
func Put(ctx context.Context, st Store, raw []byte, o PutOptions, out, warn io.Writer) error {
	raw = bytes.TrimSpace(raw)
	key := st.ConfigKey()
	if len(raw) == 0 {
		return fmt.Errorf("refuse to store an empty network config at %s", key)
	}
	cfg, err := backends.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("refuse to store the network config at %s: %w", key, err)
	}
	for _, w := range Warnings(raw) {
		fmt.Fprintf(warn, "warning: %s\n", w)
	}

	// A dry run reads nothing either, so that it works with the store out
	// of reach; it cannot warn about a change of the stored config.
	var prev []byte
	if !o.DryRun {
		prev, err = st.RawConfig(ctx)
		switch {
		case errors.Is(err, store.ErrNoConfig):
			prev = nil
		case err != nil:
			return err
		}
	}
	if prev != nil {
		warnChange(warn, prev, cfg)
	}

	if o.DryRun {
		fmt.Fprintf(out, "valid; not stored (dry run). %s would hold:\n%s\n\n", key, raw)
	} else {
		if err := st.PutConfig(ctx, raw); err != nil {
			return err
		}
		switch {
		case prev == nil:
			fmt.Fprintf(out, "stored %s:\n%s\n\n", key, raw)
		case bytes.Equal(prev, raw):
			fmt.Fprintf(out, "stored %s (unchanged):\n%s\n\n", key, raw)
		default:
			fmt.Fprintf(out, "stored %s, replacing\n%s\nwith:\n%s\n\n", key, prev, raw)
		}
	}
	return WriteSummary(out, raw, cfg)
}

// warnChange says which changes agents only pick up on restart, and which
// break a running cluster (flannel documents that Network and backend
// cannot change live).
func warnChange(w io.Writer, prev []byte, next *netconf.Config) {
	old, err := backends.ParseConfig(prev)
	if err != nil {
		fmt.Fprintf(w, "warning: replacing an invalid stored config (%v)\n", err)
		return
	}
	if old.Network != next.Network || old.IPv6Network != next.IPv6Network {
		fmt.Fprintf(w, "warning: Network changes from %s to %s: running agents keep the old network until restarted, and leases outside the new one are lost; restart every agent (and the pods on it)\n", old.Network, next.Network)
	}
	if old.BackendType != next.BackendType {
		fmt.Fprintf(w, "warning: backend changes from %s to %s: running agents keep the old one until restarted, and hosts on different backends cannot reach each other\n", old.BackendType, next.BackendType)
	}
	if old.SubnetLen != next.SubnetLen || old.SubnetMin != next.SubnetMin || old.SubnetMax != next.SubnetMax {
		fmt.Fprintf(w, "warning: SubnetLen/SubnetMin/SubnetMax change: agents apply it only when restarted, and a host whose lease no longer fits takes a new subnet\n")
	}
}

// GetFormat selects Get's output.
type GetFormat int

const (
	GetRaw    GetFormat = iota // the stored bytes
	GetParsed                  // the stored bytes and the summary
	GetJSON                    // one JSON object
)

// getJSON is Get's -o json document.
type getJSON struct {
	Key string `json:"key"`
	// Config is the stored config as JSON (re-indented; `get` without -o
	// prints the exact bytes), or as a string when it is not valid JSON.
	Config    json.RawMessage `json:"config"`
	Effective *Effective      `json:"effective,omitempty"`
	Subnets   int             `json:"subnets,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// Get prints the stored config. A missing config is an error that names
// the key and how to create one (hint, e.g. the put command line to
// suggest); an invalid one is printed and then returned as an error.
func Get(ctx context.Context, st store.RawConfigReader, f GetFormat, hint string, out io.Writer) error {
	key := st.ConfigKey()
	raw, err := st.RawConfig(ctx)
	if errors.Is(err, store.ErrNoConfig) {
		return fmt.Errorf("no network config at %s. %s: %w", key, hint, store.ErrNoConfig)
	}
	if err != nil {
		return err
	}
	cfg, perr := backends.ParseConfig(raw)
	if perr != nil {
		perr = fmt.Errorf("the network config at %s is invalid, agents will refuse it: %w", key, perr)
	}
	switch f {
	case GetJSON:
		doc := getJSON{Key: key, Config: json.RawMessage(raw)}
		if !json.Valid(raw) {
			doc.Config, _ = json.Marshal(string(raw))
		}
		if perr != nil {
			doc.Error = perr.Error()
		} else {
			e := EffectiveOf(cfg)
			doc.Effective, doc.Subnets = &e, cfg.Subnets()
		}
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return fmt.Errorf("render %s as JSON: %w", key, err)
		}
		fmt.Fprintf(out, "%s\n", b)
	default:
		out.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			fmt.Fprintln(out)
		}
		if f == GetParsed && perr == nil {
			fmt.Fprintln(out)
			if err := WriteSummary(out, raw, cfg); err != nil {
				return err
			}
		}
	}
	return perr
}

// Main is `weft config put|get ARGS`; it returns the exit status: 0, 1 on
// failure (including a refused config), 2 on bad usage.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, "weft config: no command given\n\n"+usage)
		return 2
	}
	verb, args := args[0], args[1:]
	if verb == "-h" || verb == "--help" || verb == "help" {
		fmt.Fprint(env.Stdout, usage)
		return 0
	}
	if verb != "put" && verb != "get" {
		fmt.Fprintf(env.Stderr, "weft config: unknown command %q\n\n%s", verb, usage)
		return 2
	}
	name := "weft config " + verb

	o := options.Defaults()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // cmdline.Check reports errors and usage
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	o.AddStoreFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "give up on the store after this long")
	var file, format string
	var dryRun, parsed bool
	if verb == "put" {
		fs.StringVar(&file, "f", "", "read the config from this file (- for stdin)")
		fs.BoolVar(&dryRun, "dry-run", false, "validate and show, but do not connect to the store")
	} else {
		fs.BoolVar(&parsed, "parsed", false, "also show the config with flannel's defaults filled in")
		fs.StringVar(&format, "o", "", `output format: "json" for one JSON object`)
	}
	pos, err := parseInterleaved(fs, args)
	if err := cmdline.Check(fs, err, env.Stdout, env.Stderr); err != nil {
		return cmdline.Exit(name, err, env.Stderr)
	}
	// Only the agent's flags have FLANNELD_* variables; --timeout, -f and
	// the like belong to this command alone.
	if err := options.ApplyEnv(fs, env.Getenv); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 2
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 2
	}

	var raw []byte
	var getFmt GetFormat
	switch verb {
	case "put":
		raw, err = readInput(file, pos, env.Stdin)
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n\n", name, err)
			fs.Usage()
			return 2
		}
	case "get":
		if len(pos) > 0 {
			return cmdline.Exit(name, cmdline.Fail(fs, env.Stderr, fmt.Errorf("unexpected arguments %q", pos)), env.Stderr)
		}
		switch {
		case format == "json":
			getFmt = GetJSON
		case format != "":
			fmt.Fprintf(env.Stderr, "%s: -o %q: only json is supported\n", name, format)
			return 2
		case parsed:
			getFmt = GetParsed
		}
	}

	if verb == "put" && dryRun {
		err = Put(ctx, offline(open.ConfigKey(o)), raw, PutOptions{DryRun: true}, env.Stdout, env.Stderr)
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
	if verb == "put" && o.KubeSubnetMgr {
		fmt.Fprintf(env.Stderr, "%s: with --kube-subnet-mgr the network config is %s, mounted from the net-conf.json key of the DaemonSet's ConfigMap (deploy/kube-weft.yml: kube-weft/kube-weft-cfg); change the ConfigMap with kubectl, after checking the config with --dry-run\n", name, open.ConfigKey(o))
		return 2
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := open.New(ctx, o, open.Params{Log: log, ReadOnly: verb == "get"})
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer st.Close()

	if verb == "put" {
		w, ok := st.(Store)
		if !ok {
			w = readOnly{st, "this store does not take a config"}
		}
		err = Put(ctx, w, raw, PutOptions{}, env.Stdout, env.Stderr)
	} else {
		err = Get(ctx, st, getFmt, missingHint(o, st), env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// parseInterleaved lets flags follow the config argument
// (`weft config put '{...}' --etcd-prefix /x`), which the flag package
// alone stops at; everything after "--" is an argument.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// readInput takes the config from exactly one place: -f FILE, "-f -" or a
// lone "-" for stdin, or the one argument.
func readInput(file string, pos []string, stdin io.Reader) ([]byte, error) {
	switch {
	case file != "" && len(pos) > 0:
		return nil, errors.New("give the config either with -f or as an argument, not both")
	case len(pos) > 1:
		return nil, fmt.Errorf("expected one config argument, got %d (quote the JSON so the shell passes it as one)", len(pos))
	case file == "-" || (file == "" && len(pos) == 1 && pos[0] == "-"):
		if stdin == nil {
			return nil, errors.New("no standard input to read the config from")
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read the config from stdin: %w", err)
		}
		return b, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read the config: %w", err)
		}
		return b, nil
	case len(pos) == 1:
		return []byte(pos[0]), nil
	default:
		return nil, errors.New("no config given")
	}
}

// missingHint says how to create a missing config: for etcd the put
// command line, for Kubernetes what the store suggests.
func missingHint(o options.Options, st any) string {
	if h, ok := st.(store.ConfigHinter); ok && o.KubeSubnetMgr {
		return "To create it, " + h.ConfigHint()
	}
	return "Create one with:\n  " + putHint(o) + "\n(a config written with etcdctl's v2 API, `etcdctl set`, is invisible to the v3 API weft reads)"
}

// putHint is the command that creates a config at the same endpoints and
// prefix, for the message about a missing one.
func putHint(o options.Options) string {
	d := options.Defaults()
	parts := []string{"weft config put"}
	if o.EtcdEndpoints != d.EtcdEndpoints {
		parts = append(parts, "--etcd-endpoints="+o.EtcdEndpoints)
	}
	if o.EtcdPrefix != d.EtcdPrefix {
		parts = append(parts, "--etcd-prefix="+o.EtcdPrefix)
	}
	parts = append(parts, `'{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}'`)
	return strings.Join(parts, " ")
}
