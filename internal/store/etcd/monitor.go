package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/weftnet/weft/internal/store"
)

var _ store.ConfigNotifier = (*Store)(nil)

// watchConnection reports the client's connection to etcd as it is lost
// and regained, for as long as ctx lasts. The client retries lost watch
// streams and RPCs by itself, so a short etcd outage (a restart) ends
// before any call fails and would otherwise leave no trace; this names it
// the moment the connection drops. It needs a reporter (ReportTrouble):
// without one it returns at once.
func (s *Store) watchConnection(ctx context.Context) {
	if s.report == nil {
		return
	}
	conn := s.cli.ActiveConnection()
	state := conn.GetState()
	wasReady := false
	lost := false
	for {
		switch {
		case state == connectivity.Ready:
			wasReady = true
			if lost {
				lost = false
				s.report("connection", nil)
			}
		case state == connectivity.Shutdown:
			return
		case wasReady && !lost && state != connectivity.Idle:
			// Idle is the channel resting without calls; anything else
			// after Ready is a connection that broke.
			lost = true
			s.report("connection", fmt.Errorf("%w: the connection to etcd at %s broke (%s); reconnecting",
				store.ErrUnreachable, s.endpoints, state))
		}
		if !conn.WaitForStateChange(ctx, state) {
			return // ctx done
		}
		state = conn.GetState()
	}
}

// ConfigChanges implements store.ConfigNotifier: a watch on the config
// key, so that a deleted or broken config is seen within a round trip
// rather than at the next periodic read. The channel is closed when ctx
// ends.
func (s *Store) ConfigChanges(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		// The client re-establishes the watch after reconnecting; a
		// closed channel (compaction, ctx) is retried until ctx ends.
		for ctx.Err() == nil {
			wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.ConfigKey())
			for resp := range wch {
				if len(resp.Events) == 0 {
					continue
				}
				select {
				case out <- struct{}{}:
				default: // one pending signal is enough
				}
			}
			select {
			case <-ctx.Done():
			case <-s.cli.Ctx().Done():
				return
			default:
			}
		}
	}()
	return out
}
