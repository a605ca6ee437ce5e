package configcmd

import (
	"context"
	"fmt"

	"github.com/weftnet/weft/internal/store"
)

// Store is what the config commands need from the datastore: the etcd
// store (internal/store/etcd) is one.
type Store interface {
	store.RawConfigReader
	// PutConfig validates raw and stores it byte for byte.
	PutConfig(ctx context.Context, raw []byte) error
}

// readOnly is a store that can show its config but not change it: in
// Kubernetes mode the config is a file mounted from a ConfigMap, which
// agents read and nobody should write behind the API server's back.
type readOnly struct {
	store.RawConfigReader
	why string
}

func (r readOnly) PutConfig(context.Context, []byte) error {
	return fmt.Errorf("cannot store the network config at %s: %s", r.ConfigKey(), r.why)
}

// offline is the store of put --dry-run: it knows where the config would
// go but never connects, so a dry run works with etcd out of reach.
type offline string

func (o offline) ConfigKey() string { return string(o) }

func (o offline) RawConfig(context.Context) ([]byte, error) {
	return nil, fmt.Errorf("dry run: %s not read", string(o))
}

func (o offline) PutConfig(context.Context, []byte) error {
	return fmt.Errorf("dry run: %s not written", string(o))
}
