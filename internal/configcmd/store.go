package configcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/store"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// Store is what the config commands need from the datastore.
type Store interface {
	// ConfigKey is where the config lives, for messages.
	ConfigKey() string
	// RawConfig returns the stored bytes as they are, or an error wrapping
	// store.ErrNoConfig when there are none.
	RawConfig(ctx context.Context) ([]byte, error)
	// PutConfig validates raw and stores it byte for byte.
	PutConfig(ctx context.Context, raw []byte) error
}

// EtcdStore is Store on etcd: writes go through the agent's etcd store
// (and its validation); reads of the raw bytes, which that store does not
// offer, through a second plain client with the same endpoints, TLS and
// credentials.
type EtcdStore struct {
	*etcdstore.Store
	raw *clientv3.Client
}

var _ Store = (*EtcdStore)(nil)

const dialTimeout = 5 * time.Second

// Open connects to etcd as the agent would with the same options.
func Open(ctx context.Context, o options.Options, log *slog.Logger) (*EtcdStore, error) {
	st, err := etcdstore.New(ctx, etcdstore.Options{
		Endpoints:   o.Endpoints(),
		Prefix:      o.EtcdPrefix,
		CertFile:    o.EtcdCertfile,
		KeyFile:     o.EtcdKeyfile,
		CAFile:      o.EtcdCAFile,
		Username:    o.EtcdUsername,
		Password:    o.EtcdPassword,
		DialTimeout: dialTimeout,
		Log:         log,
	})
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if o.EtcdCertfile != "" || o.EtcdCAFile != "" {
		tlsCfg, err = transport.TLSInfo{CertFile: o.EtcdCertfile, KeyFile: o.EtcdKeyfile, TrustedCAFile: o.EtcdCAFile}.ClientConfig()
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	raw, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints(),
		DialTimeout: dialTimeout,
		TLS:         tlsCfg,
		Username:    o.EtcdUsername,
		Password:    o.EtcdPassword,
		Context:     ctx,
		// Errors come back from the calls; the client's own retry
		// warnings would only repeat them.
		Logger: zap.NewNop(),
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(o.Endpoints(), ","), err)
	}
	return &EtcdStore{Store: st, raw: raw}, nil
}

// RawConfig reads <prefix>/config as stored.
func (s *EtcdStore) RawConfig(ctx context.Context) ([]byte, error) {
	key := s.ConfigKey()
	resp, err := s.raw.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read network config %s from etcd: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("read network config %s from etcd: %w", key, store.ErrNoConfig)
	}
	return resp.Kvs[0].Value, nil
}

// Close closes both clients.
func (s *EtcdStore) Close() error {
	return errors.Join(s.Store.Close(), s.raw.Close())
}
