// Package etcdstore keeps leases in etcd (v3 API) in flannel's key layout,
// so weft and flanneld hosts can share one datastore:
//
//	<prefix>/config                  network config JSON (netconf)
//	<prefix>/subnets/10.5.1.0-24     {"PublicIP":"192.168.1.3","PublicIPv6":null,...}
//
// A lease key is attached to an etcd lease (TTL, 24 h by default) and
// vanishes when the host stops renewing it. A key without an etcd lease is an
// administrator's reservation: it never expires and only the host whose
// PublicIP it carries may use it.
//
// Differences from flanneld, on purpose:
//   - Every write that decides who owns a subnet is a compare-and-swap
//     (Version==0 to create, ModRevision to reuse or delete), and losing a
//     race makes Acquire try again instead of exiting the process.
//   - Reusing a reservation keeps it without TTL; flanneld silently turns it
//     into an expiring lease.
//   - Renew keeps the same etcd lease alive (KeepAliveOnce) rather than
//     granting a new one each time, and re-creates the key if an
//     administrator deleted it while the subnet is still free.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/weftnet/weft/internal/metrics"
	"github.com/weftnet/weft/internal/netconf"
	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/etcd/zapslog"
)

// Defaults, as flanneld has them.
const (
	DefaultPrefix   = "/coreos.com/network"
	DefaultEndpoint = "http://127.0.0.1:2379"
	DefaultLeaseTTL = 24 * time.Hour
)

const defaultDialTimeout = 5 * time.Second

// Options configure the connection to etcd and the key layout.
type Options struct {
	// Endpoints are etcd client URLs; default DefaultEndpoint.
	Endpoints []string
	// Prefix is the key prefix; default DefaultPrefix. A trailing slash is
	// ignored.
	Prefix string
	// CertFile and KeyFile enable TLS with a client certificate; both or
	// neither must be set. CAFile, if set, replaces the system roots for
	// verifying the server (it enables TLS on its own too).
	CertFile, KeyFile, CAFile string
	// Username and Password enable etcd's basic authentication.
	Username, Password string
	// DialTimeout bounds connecting and authenticating; default 5 s.
	DialTimeout time.Duration
	// CallTimeout bounds every request (a read, a write, a lease
	// keepalive); default 5 s. A caller's sooner deadline still wins.
	CallTimeout time.Duration
	// LeaseTTL is the TTL of new leases; default 24 h, as flanneld's. It is
	// rounded up to whole seconds.
	LeaseTTL time.Duration
	// Log receives the store's messages; nil discards them.
	Log *slog.Logger
	// Metrics counts watch restarts and errors; nil records nothing.
	Metrics *metrics.Metrics
	// WatchExpirations makes Watch look up every peer's etcd lease
	// expiration (one TimeToLive call per lease, in the background) and
	// deliver the answers with a later call. Without it a peer's
	// Expiration is an estimate (freshly granted with LeaseTTL), which is
	// all the agent needs: it programs a peer the same whatever its expiry,
	// and etcd deletes expired keys itself. Among 5000 hosts the lookups
	// are 5000 round trips and about 12 MB of garbage at every start.
	WatchExpirations bool
}

// LogValue renders the options for logging with the password redacted.
func (o Options) LogValue() slog.Value {
	pw := ""
	if o.Password != "" {
		pw = "REDACTED"
	}
	return slog.GroupValue(
		slog.Any("endpoints", o.Endpoints),
		slog.String("prefix", o.Prefix),
		slog.String("certfile", o.CertFile),
		slog.String("keyfile", o.KeyFile),
		slog.String("cafile", o.CAFile),
		slog.String("username", o.Username),
		slog.String("password", pw),
		slog.Duration("dial_timeout", o.DialTimeout),
		slog.Duration("call_timeout", o.CallTimeout),
		slog.Duration("lease_ttl", o.LeaseTTL),
	)
}

// Store is a store.Store on etcd. Its methods may be called concurrently.
type Store struct {
	cli      *clientv3.Client
	prefix   string // without trailing slash
	subnets  string // prefix + "/subnets/"
	ttl      time.Duration
	ttlGrant int64 // ttl in whole seconds, as etcd grants it
	// callTimeout bounds each request (calls.go); endpoints names etcd in
	// errors.
	callTimeout time.Duration
	endpoints   string
	// report, when set, gets Watch's errors instead of the log.
	report func(op string, err error)
	// watchExpirations is Options.WatchExpirations.
	watchExpirations bool
	log              *slog.Logger
	metrics          *metrics.Metrics
}

var _ store.Store = (*Store)(nil)

// New creates a client for the endpoints. It does not wait for etcd to be
// reachable (unless authentication is configured, which needs a round trip);
// operations fail and Watch retries until it is. ctx only bounds New: the
// client lives until Close.
func New(ctx context.Context, o Options) (*Store, error) {
	if len(o.Endpoints) == 0 {
		o.Endpoints = []string{DefaultEndpoint}
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.Prefix == "" || !strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("etcd key prefix %q: must start with / and not be /", o.Prefix)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = defaultCallTimeout
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	tlsCfg, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	if tlsCfg == nil {
		var plain []string
		for _, ep := range o.Endpoints {
			if u, err := url.Parse(ep); err != nil || u.Scheme != "https" {
				plain = append(plain, ep)
			}
		}
		if len(plain) > 0 {
			log.Warn("connecting to etcd without TLS; set the cert and key files to protect leases in transit", "endpoints", plain)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		TLS:         tlsCfg,
		Username:    o.Username,
		Password:    o.Password,
		// The client logs every retried RPC as a warning; weft reports the
		// errors that matter itself.
		Logger:               zapslog.New(log, zapcore.ErrorLevel, "etcd-client"),
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		DialOptions:          dialOptions(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	ttlGrant := int64((o.LeaseTTL + time.Second - 1) / time.Second)
	s := &Store{
		cli:         cli,
		prefix:      o.Prefix,
		subnets:     o.Prefix + "/subnets/",
		ttl:         time.Duration(ttlGrant) * time.Second,
		ttlGrant:    ttlGrant,
		callTimeout: o.CallTimeout,
		endpoints:   strings.Join(o.Endpoints, ","),
		log:         log,
		metrics:     o.Metrics,

		watchExpirations: o.WatchExpirations,
	}
	// Every request the store makes goes through these (calls.go).
	cli.KV = boundedKV{KV: cli.KV, s: s}
	cli.Lease = boundedLease{Lease: cli.Lease, s: s}
	return s, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("etcd TLS: cert file %q and key file %q must be given together", o.CertFile, o.KeyFile)
	}
	if o.CertFile == "" && o.CAFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: load client certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS: CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Close closes the client. Leases stay in etcd until they expire.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client: %w", err)
	}
	return nil
}

// ConfigKey is where the network config lives: <prefix>/config.
func (s *Store) ConfigKey() string { return s.prefix + "/config" }

// SubnetsPrefix is the directory of lease keys: <prefix>/subnets/.
func (s *Store) SubnetsPrefix() string { return s.subnets }

// Config reads and parses the network config.
func (s *Store) Config(ctx context.Context) (*netconf.Config, error) {
	raw, err := s.RawConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := netconf.Parse(raw)
	if err == nil {
		err = cfg.CheckEtcd()
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s in etcd: %w", store.ErrInvalidConfig, s.ConfigKey(), err)
	}
	return cfg, nil
}

// RawConfig reads <prefix>/config as stored, without parsing it.
func (s *Store) RawConfig(ctx context.Context) ([]byte, error) {
	key := s.ConfigKey()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read network config %s from etcd: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		// flanneld users often wrote the config with the v2 API, which the
		// v3 API does not see; say so.
		return nil, fmt.Errorf("read network config %s from etcd: %w (was it written with the etcd v3 API?)", key, store.ErrNoConfig)
	}
	return resp.Kvs[0].Value, nil
}

// PutConfig stores raw as the network config, byte for byte, after checking
// that it parses; an invalid config is refused with the reason.
func (s *Store) PutConfig(ctx context.Context, raw []byte) error {
	key := s.ConfigKey()
	cfg, err := netconf.Parse(raw)
	if err == nil {
		err = cfg.CheckEtcd()
	}
	if err != nil {
		return fmt.Errorf("refuse to store network config at %s: %w", key, err)
	}
	if _, err := s.cli.Put(ctx, key, string(raw)); err != nil {
		return fmt.Errorf("store network config at %s: %w", key, err)
	}
	return nil
}
