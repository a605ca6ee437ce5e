// Command weft is the weft network fabric's one binary for operators:
//
//	weft agent [flanneld flags]   run the host agent (also: invoked as "flanneld" or "weft-agent")
//	weft lab demo|up|down|exec    a virtual cluster on this machine (not with -tags nolab)
//	weft status|config|cleanup|docker-opts|version
//
// Built with -tags nolab (the container image's build, docs/image.md) it
// leaves out the lab, the benchmarks and the fault suite, and with them
// the embedded etcd server and the Kubernetes control plane driver: what
// is left is what a node needs, and the image links weft-agent and
// flanneld to it instead of carrying a second binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/cmdline"
	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/version"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// labCommand runs `weft lab ARGS`; lab.go sets it, and a build with
// -tags nolab leaves it nil.
var labCommand func(ctx context.Context, args []string, stdout, stderr io.Writer) int

const usageHead = `weft: a flannel-compatible pod network for Kubernetes and Docker hosts

Usage:
  weft agent [flags]          run the host agent; takes flanneld's flags and FLANNELD_* variables
`

const usageLab = `  weft lab demo [flags]       build a virtual cluster on this machine, prove it works, tear it down
  weft lab up|down|exec       the same cluster for interactive use
`

// noLab is what a nolab build says for the lab's lines and for `weft lab`.
const noLab = `the lab, the benchmarks and the fault suite (weft lab ...) are not in this
build of weft (-tags nolab, as in the container image); use a full build
(make build) on a machine of your own.
`

const usageTail = `  weft config put|get         store or show the network config in etcd, validated as the agent does
  weft docker-opts [flags]    write docker's options from subnet.env (flannel's mk-docker-opts.sh)
  weft status [flags]         every lease, this host's kernel entries per peer, and what is wrong
  weft cleanup [agent flags]  remove every rule, device, route and file weft installed here (stop the agent first)
  weft version                print the version

Run "weft COMMAND -h" for a command's flags. Installed or linked as
"flanneld" or "weft-agent", the binary behaves as "weft agent".
`

// usage is the top-level help, with the lab's lines when it is built in.
func usage() string {
	if labCommand == nil {
		return usageHead + usageTail + "\nNot here: " + noLab
	}
	return usageHead + usageLab + usageTail
}

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
	if prog == "flanneld" || prog == "weft-agent" {
		return runAgent(ctx, prog, rest, stdout, stderr)
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "weft: no command given\n\n%s", usage())
		return 2
	}
	switch rest[0] {
	case "agent":
		return runAgent(ctx, "weft agent", rest[1:], stdout, stderr)
	case "cleanup":
		return runCleanup(ctx, rest[1:], stdout, stderr)
	case "lab":
		if labCommand == nil {
			fmt.Fprint(stderr, "weft: "+noLab)
			return 2
		}
		return labCommand(ctx, rest[1:], stdout, stderr)
	case "config":
		return runConfig(ctx, rest[1:], stdout, stderr)
	case "docker-opts":
		return runDockerOpts(rest[1:], stdout, stderr)
	case "status":
		return runStatus(ctx, rest[1:], stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(rest[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	default:
		fmt.Fprintf(stderr, "weft: unknown command %q\n\n%s", rest[0], usage())
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
