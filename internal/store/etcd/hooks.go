package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/internal/store"
)

var (
	_ store.PublishedReader = (*Store)(nil)
	_ store.ConfigHinter    = (*Store)(nil)
)

// Published returns the backend type and data of the lease that carries
// publicIP, if there is one.
func (s *Store) Published(ctx context.Context, publicIP netip.Addr) (string, json.RawMessage, error) {
	ls, err := s.List(ctx)
	if err != nil {
		return "", nil, err
	}
	for _, l := range ls {
		if l.Attrs.PublicIP == publicIP {
			return l.Attrs.BackendType, l.Attrs.BackendData, nil
		}
	}
	return "", nil, nil
}

// ConfigHint is the etcdctl command that creates a network config.
func (s *Store) ConfigHint() string {
	return fmt.Sprintf(`etcdctl put %s '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'  (or: weft config put --etcd-prefix %s '...')`, s.ConfigKey(), s.prefix)
}
