package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/version"
)

// Command runs the agent as a program does: it parses flanneld's flags
// and FLANNELD_* variables (name is the program name for messages and
// usage), logs to stderr, runs until ctx ends and returns the exit status.
// `weft agent`, `weft-agent` and a binary installed as `flanneld` all come
// here.
func Command(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	opts, fs, err := options.Parse(name, args, os.Getenv)
	if err := cmdline.Check(fs, err, stdout, stderr); err != nil {
		return cmdline.Exit(name, err, stderr)
	}
	if opts.Version {
		fmt.Fprintf(stdout, "%s\n", version.Version)
		return 0
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: invalid flags:\n%v\n", name, err)
		return 2
	}
	log := NewLogger(stderr, &opts)
	// client-go logs through klog; send it to the same handler, and let -v
	// reach klog's own verbosity, which gates those lines before they get
	// here.
	klog.SetSlogLogger(log)
	if opts.Verbosity > 0 {
		var kfs flag.FlagSet
		klog.InitFlags(&kfs)
		_ = kfs.Set("v", strconv.Itoa(opts.Verbosity))
	}
	limit := setMemoryLimit(os.Getenv("GOMEMLIMIT"))
	log.Info("starting weft agent", "version", version.Version, "options", opts, "memory-limit", memoryLimitAttr(limit))
	opts.Warn(log)
	for _, f := range opts.Klog.Given {
		log.Debug("klog flag accepted for flanneld compatibility and ignored: weft logs to stderr through its own logger", "flag", f)
	}
	if err := Main(ctx, opts, log); err != nil {
		if ctx.Err() != nil {
			return 0
		}
		log.Error("agent failed", "err", err.Error())
		return 1
	}
	return 0
}

// NewLogger is the agent's logger: text or JSON (--log-format) at the
// level the flags ask for.
func NewLogger(w io.Writer, o *options.Options) *slog.Logger {
	lvl, _ := o.Level()
	ho := &slog.HandlerOptions{Level: lvl}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
