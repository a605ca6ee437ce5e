// Package health serves the agent's liveness and readiness endpoints on
// --healthz-ip:--healthz-port, the same paths flanneld serves, so existing
// DaemonSet probes keep working:
//
//	GET /healthz  200 while the process runs
//	GET /readyz   503 until the agent is ready, then 200
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Status tracks readiness. The zero value is not ready.
type Status struct {
	mu     sync.Mutex // guards reason and conds
	reason string     // why not ready; "" means ready
	init   bool
	// conds are the standing problems that make a ready agent not ready,
	// by source (see SetCondition); each clears on its own.
	conds map[string]string
}

// SetReady marks the agent ready.
func (s *Status) SetReady() {
	s.mu.Lock()
	s.reason, s.init = "", true
	s.mu.Unlock()
}

// SetNotReady marks it not ready, saying why.
func (s *Status) SetNotReady(reason string) {
	s.mu.Lock()
	s.reason, s.init = reason, true
	s.mu.Unlock()
}

// Ready reports readiness and, when not ready, the reason.
func (s *Status) Ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.init {
		return false, "starting"
	}
	if s.reason != "" {
		return false, s.reason
	}
	if len(s.conds) > 0 {
		return false, s.condReasons()
	}
	return true, ""
}

// Handler serves /healthz and /readyz.
func (s *Status) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "weft is running")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := s.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "weft is not ready yet: %s\n", why)
			return
		}
		fmt.Fprintln(w, "weft is ready")
	})
	return mux
}

// Serve listens on addr and serves h until ctx is done; what names the
// listener in its log line and errors ("health checks", "profiling").
func Serve(ctx context.Context, what, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Info("serving "+what, "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server on %s: %w", what, addr, err)
	}
	return nil
}
