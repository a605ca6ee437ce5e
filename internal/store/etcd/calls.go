package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/internal/store"
)

// defaultCallTimeout bounds one etcd request when Options.CallTimeout is
// not set. The client waits for a connection as long as its context
// allows, so without a bound a call made while etcd is unreachable hangs,
// and whoever made it says nothing (an agent started without etcd was
// silent for 51 s).
const defaultCallTimeout = 5 * time.Second

// Connection upkeep. Without keepalives a connection whose packets vanish
// (a partition, a firewall rule) is not noticed; after it heals, etcd's
// answers wait for TCP's retransmission timer, which has grown meanwhile:
// a watch delivered changes 12–21 s after a 20 s partition healed. With a
// ping every few seconds the client notices within keepAliveTime +
// keepAliveTimeout, drops the connection and dials a fresh one, which the
// short reconnect backoff retries often enough to be up about a second
// after the path is back (docs/benchmarks.md, "Watch after a partition").
const (
	// keepAliveTime is above etcd's default --grpc-keepalive-min-time (5
	// s): pings more frequent than that are answered with GOAWAY.
	keepAliveTime    = 6 * time.Second
	keepAliveTimeout = 3 * time.Second
	// reconnectMaxDelay caps gRPC's reconnect backoff (120 s by default):
	// two connection attempts a second per agent while etcd is away are
	// cheap, and bounds how long a healed path goes unused.
	reconnectMaxDelay = 500 * time.Millisecond
	// connectTimeout bounds one connection attempt (20 s by default). It
	// is at TCP's first SYN retransmission (1 s), so that an attempt whose
	// SYN was lost during the partition is abandoned for a fresh one
	// rather than waiting out the next, longer retransmission after the
	// path is back. A TCP and TLS handshake to etcd takes milliseconds on
	// the networks etcd clusters run on.
	connectTimeout = time.Second
)

// dialOptions are the gRPC options the store adds to the etcd client's.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   reconnectMaxDelay,
			},
			MinConnectTimeout: connectTimeout,
		}),
		// Runs inside the client's retry interceptor, once per attempt,
		// and so sees gRPC's own error, which names the connection
		// problem; the client replaces it with a bare "context deadline
		// exceeded" before returning.
		grpc.WithChainUnaryInterceptor(recordAttempt),
	}
}

// attemptKey is the context key under which a bounded call keeps the last
// error of its attempts.
type attemptKey struct{}

type attempts struct {
	mu   sync.Mutex
	last error
}

func recordAttempt(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		if a, ok := ctx.Value(attemptKey{}).(*attempts); ok {
			a.mu.Lock()
			a.last = err
			a.mu.Unlock()
		}
	}
	return err
}

// bound gives one call its deadline (unless the caller's is sooner) and a
// place for its attempts' errors.
func (s *Store) bound(ctx context.Context) (context.Context, *attempts, context.CancelFunc) {
	a := &attempts{}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, attemptKey{}, a), s.callTimeout)
	return ctx, a, cancel
}

// explain turns a call's error into one that says why when the call ran
// out of time: the client reports only "context deadline exceeded",
// whether etcd could not be reached at all or was slow to answer.
func (s *Store) explain(ctx context.Context, start time.Time, a *attempts, err error) error {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	waited := time.Since(start).Round(100 * time.Millisecond)
	state := s.cli.ActiveConnection().GetState()
	if state == connectivity.Ready && (last == nil || !isConnectionError(last)) {
		return &callError{endpoints: s.endpoints, waited: waited, err: err}
	}
	why := "no connection"
	if last != nil {
		why = status.Convert(last).Message()
	}
	if state == connectivity.Connecting && (last == nil || strings.Contains(why, "while waiting for connections")) {
		// gRPC has no error to show yet: its connection attempt is
		// still unanswered, as when packets are dropped on the way.
		why = "the connection attempt is not answered (packets dropped on the way, or etcd down behind a firewall)"
	}
	return &callError{endpoints: s.endpoints, waited: waited, unreachable: true, why: why, err: err}
}

// isConnectionError reports whether a gRPC attempt failed for want of a
// connection rather than on the server.
func isConnectionError(err error) bool {
	c := store.Classify(err)
	return c == store.CauseUnreachable || c == store.CauseTLS
}

// callError is an etcd call that ran out of time, with what was known
// about the connection meanwhile.
type callError struct {
	endpoints   string
	waited      time.Duration
	unreachable bool
	why         string // gRPC's last word on the connection
	err         error  // the client's error (context.DeadlineExceeded)
}

func (e *callError) Error() string {
	if e.unreachable {
		return fmt.Sprintf("etcd at %s is unreachable (no answer after %v): %s", e.endpoints, e.waited, e.why)
	}
	return fmt.Sprintf("etcd at %s is connected but did not answer within %v", e.endpoints, e.waited)
}

func (e *callError) Unwrap() []error {
	if e.unreachable {
		// A TLS failure is told apart by the text of why, which Classify
		// reads before it looks for ErrUnreachable.
		return []error{e.err, store.ErrUnreachable}
	}
	return []error{e.err}
}

// boundedCall runs one request under the store's call timeout and
// explains its error (see explain).
func boundedCall[R any](ctx context.Context, s *Store, call func(context.Context) (R, error)) (R, error) {
	bctx, a, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	r, err := call(bctx)
	return r, s.explain(ctx, start, a, err)
}

// boundedKV and boundedLease give every request of the client's KV and
// Lease APIs the store's call timeout, so that no store method can hang
// whoever calls it; Watch and KeepAlive streams are left alone (their
// health is the keepalive's job).
type boundedKV struct {
	clientv3.KV
	s *Store
}

func (k boundedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return boundedCall(ctx, k.s, func(bctx context.Context) (*clientv3.GetResponse, error) { return k.KV.Get(bctx, key, opts...) })
}

func (k boundedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return boundedCall(ctx, k.s, func(bctx context.Context) (*clientv3.PutResponse, error) { return k.KV.Put(bctx, key, val, opts...) })
}

func (k boundedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	return boundedCall(ctx, k.s, func(bctx context.Context) (*clientv3.DeleteResponse, error) { return k.KV.Delete(bctx, key, opts...) })
}

func (k boundedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	return boundedCall(ctx, k.s, func(bctx context.Context) (clientv3.OpResponse, error) { return k.KV.Do(bctx, op) })
}

// Txn bounds the transaction from its creation to its Commit, which
// follow each other at once in every caller.
func (k boundedKV) Txn(ctx context.Context) clientv3.Txn {
	bctx, a, cancel := k.s.bound(ctx)
	return &boundedTxn{Txn: k.KV.Txn(bctx), s: k.s, ctx: ctx, a: a, cancel: cancel, start: time.Now()}
}

type boundedTxn struct {
	clientv3.Txn
	s      *Store
	ctx    context.Context
	a      *attempts
	cancel context.CancelFunc
	start  time.Time
}

func (t *boundedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *boundedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *boundedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }

func (t *boundedTxn) Commit() (*clientv3.TxnResponse, error) {
	defer t.cancel()
	r, err := t.Txn.Commit()
	return r, t.s.explain(t.ctx, t.start, t.a, err)
}

type boundedLease struct {
	clientv3.Lease
	s *Store
}

func (l boundedLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	return boundedCall(ctx, l.s, func(bctx context.Context) (*clientv3.LeaseGrantResponse, error) { return l.Lease.Grant(bctx, ttl) })
}

func (l boundedLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	return boundedCall(ctx, l.s, func(bctx context.Context) (*clientv3.LeaseRevokeResponse, error) { return l.Lease.Revoke(bctx, id) })
}

func (l boundedLease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	return boundedCall(ctx, l.s, func(bctx context.Context) (*clientv3.LeaseTimeToLiveResponse, error) {
		return l.Lease.TimeToLive(bctx, id, opts...)
	})
}

func (l boundedLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	return boundedCall(ctx, l.s, func(bctx context.Context) (*clientv3.LeaseKeepAliveResponse, error) {
		return l.Lease.KeepAliveOnce(bctx, id)
	})
}

var _ store.TroubleReporter = (*Store)(nil)

// ReportTrouble implements store.TroubleReporter for Watch's errors. Call
// it before Watch.
func (s *Store) ReportTrouble(report func(op string, err error)) { s.report = report }
