package kubestore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/store"
)

// apiStatus answers every request with a Kubernetes Status of code, as
// an API server does for a bad token (401) or missing RBAC (403).
func apiStatus(code int, reason string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"` + reason + `","reason":"` + reason + `","code":` + strconv.Itoa(code) + `}`))
	}
}

func testStore(t *testing.T, h http.Handler, o Options) *Store {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cs, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	o.NodeName = "n1"
	s, err := newStore(context.Background(), cs, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The node watch's errors reach the agent's tracker classified: a 401 is
// named as the credentials, a 403 as RBAC, not as the network.
func TestWatchReportsAPIErrorsByCause(t *testing.T) {
	for _, c := range []struct {
		code   int
		reason string
		want   store.Cause
	}{
		{401, "Unauthorized", store.CauseAuth},
		{403, "Forbidden", store.CausePermission},
	} {
		s := testStore(t, apiStatus(c.code, c.reason), Options{})
		var mu sync.Mutex
		var got []error
		s.ReportTrouble(func(op string, err error) {
			if op != "watch" {
				t.Errorf("reported op %q, want watch", op)
			}
			mu.Lock()
			got = append(got, err)
			mu.Unlock()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- s.Watch(ctx, func([]lease.Lease) {}) }()
		deadline := time.Now().Add(8 * time.Second)
		var first error
		for first == nil && time.Now().Before(deadline) {
			mu.Lock()
			if len(got) > 0 {
				first = got[0]
			}
			mu.Unlock()
			if first == nil {
				select {
				case <-time.After(20 * time.Millisecond):
				case err := <-done:
					t.Fatalf("Watch returned %v before reporting", err)
				}
			}
		}
		cancel()
		<-done
		if first == nil {
			t.Fatalf("HTTP %d: no watch error reported", c.code)
		}
		if cause := store.Classify(first); cause != c.want {
			t.Errorf("HTTP %d: reported %v, classified %q, want %q", c.code, first, cause, c.want)
		}
	}
}

// A request to an API server that does not answer ends at the call
// timeout, as a timeout.
func TestRequestsAreBounded(t *testing.T) {
	release := make(chan struct{})
	s := testStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), Options{CallTimeout: 300 * time.Millisecond})
	defer close(release)
	start := time.Now()
	_, err := s.getNode(context.Background())
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("GetNode took %v with a 300ms call timeout", took)
	}
	if err == nil {
		t.Fatal("GetNode succeeded against a server that never answers")
	}
	if cause := store.Classify(err); cause != store.CauseTimeout {
		t.Errorf("Classify(%v) = %q, want timeout", err, cause)
	}
}
