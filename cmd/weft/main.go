// Command weft is the weft network fabric's one binary for operators:
//
//	weft agent [flanneld flags]   run the host agent (also: invoked as "flanneld")
//	weft lab demo|up|down|exec    a virtual cluster on this machine
//	weft version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/bench"
	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/faults"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/version"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

const usage = `weft: a flannel-compatible pod network for Kubernetes and Docker hosts

Usage:
  weft agent [flags]          run the host agent; takes flanneld's flags and FLANNELD_* variables
  weft lab demo [flags]       build a virtual cluster on this machine, prove it works, tear it down
  weft lab up|down|exec       the same cluster for interactive use
  weft config put|get         store or show the network config in etcd, validated as the agent does
  weft docker-opts [flags]    write docker's options from subnet.env (flannel's mk-docker-opts.sh)
  weft status [flags]         every lease, this host's kernel entries per peer, and what is wrong
  weft cleanup [agent flags]  remove every rule, device, route and file weft installed here (stop the agent first)
  weft version                print the version

Run "weft agent -h" or "weft lab -h" for their flags. Installed or linked as
"flanneld", the binary behaves as "weft agent".
`

func run(args []string, stdout, stderr io.Writer) int {
	// A first SIGINT/SIGTERM cancels the context for a clean stop; after
	// that the default action returns, so a second one kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	prog := filepath.Base(args[0])
	rest := args[1:]
	if prog == "flanneld" {
		return runAgent(ctx, prog, rest, stdout, stderr)
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "weft: no command given\n\n%s", usage)
		return 2
	}
	switch rest[0] {
	case "agent":
		return runAgent(ctx, "weft agent", rest[1:], stdout, stderr)
	case "cleanup":
		return runCleanup(ctx, rest[1:], stdout, stderr)
	case "lab":
		// The benchmarks build on the lab, so the lab cannot import them.
		lab.BenchMain = bench.Main
		lab.FaultsMain = faults.Main
		err := lab.Main(ctx, rest[1:], stdout, stderr)
		// `weft lab exec h1 -- CMD` exits with CMD's status, as
		// `ip netns exec` does.
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		return cmdline.Exit("weft lab", err, stderr)
	case "config":
		return runConfig(ctx, rest[1:], stdout, stderr)
	case "docker-opts":
		return runDockerOpts(rest[1:], stdout, stderr)
	case "status":
		return runStatus(ctx, rest[1:], stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(rest[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "weft: unknown command %q\n\n%s", rest[0], usage)
		return 2
	}
}

func runAgent(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	return agent.Command(ctx, name, args, stdout, stderr)
}

// runVersion is `weft version`, which takes no flags or arguments.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft version", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: weft version\n\nPrints weft's version.") }
	err := cmdline.Parse(fs, args, stdout, stderr)
	if err == nil {
		err = cmdline.NoArgs(fs, stderr)
	}
	if err != nil {
		return cmdline.Exit(fs.Name(), err, stderr)
	}
	fmt.Fprintf(stdout, "weft %s\n", version.Version)
	return 0
}

const cleanupUsage = `Usage: weft cleanup [agent flags]

Removes every traffic rule, device, route and file weft installed on this
host; the lease in the store is left to expire. Stop the agent first, or it
puts everything back. Give it the agent's flags (or the same FLANNELD_*
variables) so that it finds the same subnet file and state directory.

Flags:
`

func runCleanup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, fs, err := options.Parse("weft cleanup", args, os.Getenv)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), cleanupUsage)
		fs.PrintDefaults()
	}
	if err := cmdline.Check(fs, err, stdout, stderr); err != nil {
		return cmdline.Exit("weft cleanup", err, stderr)
	}
	log := agent.NewLogger(stderr, &opts)
	if err := agent.Cleanup(ctx, opts, log); err != nil {
		log.Error("cleanup incomplete", "err", err.Error())
		return 1
	}
	return 0
}
