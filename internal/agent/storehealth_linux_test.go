package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/health"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/options"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

// An agent started while etcd's answers are dropped on the way says so,
// naming etcd's endpoint, within 2 s (it used to say nothing for as long
// as it waited, and /readyz blamed the network config); /readyz names the
// cause too. When the path heals the end of the trouble is logged and the
// agent carries on.
func TestStartWhileEtcdCutOffSaysSoAtOnce(t *testing.T) {
	p := etcdtest.StartPartitionable(t)
	p.Cut()

	opts := options.Defaults()
	opts.EtcdEndpoints = p.Endpoint()
	opts.SubnetFile = filepath.Join(t.TempDir(), "subnet.env")
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	st, err := etcdstore.New(context.Background(), etcdstore.Options{Endpoints: []string{p.Endpoint()}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := &recorder{}
	hs := &health.Status{}
	a := New(opts, Deps{
		Store:           st,
		Backends:        map[string]backend.Factory{"host-gw": func(backend.Config) (backend.Backend, error) { return rec, nil }},
		SelectInterface: testInterface,
		Health:          hs,
		Log:             log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { awaitStop(t, cancel, done) })

	nstest.Eventually(t, 2*time.Second, func() error {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "store unreachable") && strings.Contains(l, p.Endpoint()) {
				return nil
			}
		}
		return fmt.Errorf("no WARN naming etcd at %s as unreachable yet:\n%s", p.Endpoint(), logs.String())
	})
	t.Logf("first line about the unreachable store after %v", time.Since(started).Round(time.Millisecond))
	rr := httptest.NewRecorder()
	hs.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != 503 || !strings.Contains(rr.Body.String(), "store unreachable: ") {
		t.Errorf("/readyz = %d %q, want 503 naming the unreachable store", rr.Code, rr.Body.String())
	}

	p.Heal()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if _, err := cli.Put(pctx, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if ok, reason := hs.Ready(); !ok {
			return fmt.Errorf("not ready: %s", reason)
		}
		return nil
	})
	t.Logf("agent log:\n%s", logs.String())
	if !strings.Contains(logs.String(), "store answering again") {
		t.Errorf("the end of the outage is not logged:\n%s", logs.String())
	}
}
