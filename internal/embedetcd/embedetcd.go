// Package embedetcd runs a single-member etcd server inside the current
// process, for tests and for `weft lab`. It trades durability for speed
// (no fsync) and must never back a real cluster.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"

	"github.com/weftnet/weft/internal/store/etcd/zapslog"
)

// readyTimeout bounds how long Start waits for the member to elect itself
// leader and serve clients when the caller's context has no deadline.
const readyTimeout = 30 * time.Second

// Options says where the server keeps its data and which addresses it serves.
type Options struct {
	// Dir is the data directory. Starting again on the same Dir resumes the
	// same data (keys, revisions, leases).
	Dir string
	// ClientURL is where clients connect and what Endpoint returns, e.g.
	// "http://127.0.0.1:23790" or, in the lab, "http://10.99.0.1:2379". The
	// host must be an IP address present on this host (or in the netns the
	// caller runs in).
	ClientURL string
	// PeerURL is the raft peer listener, e.g. "http://127.0.0.1:23800". A
	// single member still needs one.
	PeerURL string
	// Log receives etcd's warnings and errors; nil discards them.
	Log *slog.Logger
}

// Server is a running embedded etcd member. Close stops it.
type Server struct {
	etcd      *embed.Etcd
	endpoint  string
	closing   *atomic.Bool // set when Close starts; silences shutdown noise
	closeOnce sync.Once
}

// Start starts the member and returns once it is leader and serving clients,
// or an error when it is not ready before ctx's deadline (30 s without one).
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("start embedded etcd: no data directory given")
	}
	curl, err := parseURL("client", o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	purl, err := parseURL("peer", o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "weft"
	cfg.Dir = o.Dir
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	// etcd's info level narrates every election and snapshot; only warnings
	// and errors are worth a line in weft's output.
	cfg.LogLevel = "warn"
	var log *slog.Logger
	closing := new(atomic.Bool)
	if o.Log != nil {
		log = slog.New(&quietHandler{h: o.Log.Handler(), closing: closing})
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapslog.New(log, zapcore.WarnLevel, "etcd-server"))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s on %s: %w", o.Dir, o.ClientURL, err)
	}
	s := &Server{etcd: e, endpoint: curl.String(), closing: closing}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	select {
	case <-e.Server.ReadyNotify():
		return s, nil
	case err := <-e.Err():
		s.Close()
		return nil, fmt.Errorf("start embedded etcd on %s: %w", o.ClientURL, err)
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("start embedded etcd on %s: not ready: %w", o.ClientURL, ctx.Err())
	}
}

func parseURL(what, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("no %s URL given", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %s URL %q: %w", what, raw, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%s URL %q: want http://host:port", what, raw)
	}
	return u, nil
}

// Endpoint is the client URL, ready for clientv3.Config.Endpoints.
func (s *Server) Endpoint() string { return s.endpoint }

// Close stops the member and releases its ports and data directory. It is
// safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.etcd.Close()
	})
}

// benign are etcd warnings that every lab or test member triggers by design
// (plain http, a single port, simple auth tokens); they are logged at debug.
var benign = []string{
	"Running http and grpc server on single port",
	"simple token is not cryptographically signed",
}

// quietHandler demotes etcd's expected warnings to debug, and everything
// once Close has started (etcd reports its listeners closing as errors).
type quietHandler struct {
	h       slog.Handler
	closing *atomic.Bool
}

func (q *quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return q.h.Enabled(ctx, l) }

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	demote := q.closing.Load()
	for _, b := range benign {
		demote = demote || strings.HasPrefix(r.Message, b)
	}
	if demote && r.Level > slog.LevelDebug {
		if !q.h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	return q.h.Handle(ctx, r)
}

func (q *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietHandler{h: q.h.WithAttrs(as), closing: q.closing}
}

func (q *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{h: q.h.WithGroup(name), closing: q.closing}
}
