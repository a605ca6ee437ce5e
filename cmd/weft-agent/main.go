// Command weft-agent is the host agent alone: flanneld's flags and
// FLANNELD_* variables, etcd or Kubernetes store, every backend. It is what
// hosts run (systemd unit, DaemonSet); `weft agent` in the multi-tool binary
// does the same but carries the lab, the embedded etcd server and the
// benchmarks, which an agent never needs in memory. Installed as
// "flanneld", it replaces flannel's binary under its own name. The
// container image carries neither: its one binary is weft built with
// -tags nolab, linked as weft-agent (docs/image.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weftnet/weft/internal/agent"
)

func main() {
	// The first SIGINT/SIGTERM cancels the context for a clean stop; after
	// that the default action returns, so a second one kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := agent.Command(ctx, filepath.Base(os.Args[0]), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
