package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/weftnet/weft/internal/cni/confdir"
	"github.com/weftnet/weft/internal/web"
)

// cniConfPeriod is how often the CNI config directory is read again: a
// package install or another DaemonSet may drop a config there at any
// time, and reading a directory of a few files is cheap.
const cniConfPeriod = 30 * time.Second

// cniConfRepeat: a standing conflict is logged again this often, so that
// it is in whatever window of the log someone reads.
const cniConfRepeat = 10 * time.Minute

// cniConfWatch follows the runtime's CNI config directory for another
// network's config that sorts before weft's and so silently takes new
// pods (internal/cni/confdir): logged when it appears (and every
// cniConfRepeat while it stays), on the page, and when it is gone.
type cniConfWatch struct {
	dir    string
	log    *slog.Logger
	page   *pageView
	now    func() time.Time
	last   string // the problem last reported, "" for none
	logged time.Time
}

// check reads the directory once and reports a change.
func (w *cniConfWatch) check() {
	c, err := confdir.Read(w.dir)
	if err != nil {
		w.log.Debug("cannot check the CNI config directory", "dir", w.dir, "err", err.Error())
		return
	}
	p := c.Problem()
	now := w.now()
	switch {
	case p != "" && (p != w.last || now.Sub(w.logged) >= cniConfRepeat):
		w.log.Error("another network's CNI config takes this node's pods: "+p, "file", c.First, "weft-config", c.Own, "dir", w.dir)
		if p != w.last {
			w.page.add(web.EventConfig, "%s", p)
		}
		w.logged = now
	case p == "" && w.last != "":
		w.log.Info("weft's CNI config is the one the runtime uses again", "file", c.First, "dir", w.dir)
		w.page.add(web.EventConfig, "%s in %s is the runtime's pod network again", c.First, w.dir)
	}
	w.last = p
}

func (w *cniConfWatch) run(ctx context.Context) error {
	t := time.NewTicker(cniConfPeriod)
	defer t.Stop()
	for {
		w.check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
