package lab

import (
	"context"
	"log/slog"

	"github.com/weftnet/weft/internal/embedetcd"
)

// runEtcd is the body of the hidden `weft lab _etcd` process: an embedded
// single-member etcd serving until ctx is cancelled (SIGTERM from `weft lab
// down`).
func runEtcd(ctx context.Context, dataDir, clientURL, peerURL string, log *slog.Logger) error {
	srv, err := embedetcd.Start(ctx, embedetcd.Options{
		Dir:       dataDir,
		ClientURL: clientURL,
		PeerURL:   peerURL,
		Log:       log,
	})
	if err != nil {
		return err
	}
	log.Info("etcd serving", "endpoint", srv.Endpoint(), "data-dir", dataDir)
	<-ctx.Done()
	srv.Close()
	log.Info("etcd stopped")
	return nil
}
