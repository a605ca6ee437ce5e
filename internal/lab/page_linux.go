package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/web"
)

// The lab page is one more lab process, `weft lab _page`, in the root
// namespace so that a browser on this machine reaches it. It reaches the
// agents' health listeners from inside each host's namespace, which is
// also how it proxies each agent's own page under /h/NAME/.

func pagePIDFile(topo Topology) string  { return filepath.Join(topo.StateDir, "page.pid") }
func pageAddrFile(topo Topology) string { return filepath.Join(topo.StateDir, "page.addr") }
func pageLogFile(topo Topology) string  { return filepath.Join(topo.StateDir, "page.log") }

// startPage starts the page process and waits until it has written the
// address it listens on (which is how a port 0 becomes a real one).
func (l *Lab) startPage(ctx context.Context) error {
	args := []string{"lab", "_page", "--prefix", l.topo.Spec.Prefix, "--state-dir", l.topo.Spec.StateRoot, "--addr", l.opts.PageAddr}
	c, err := spawn("page", "", l.opts.WeftBinary, args, pageLogFile(l.topo), pagePIDFile(l.topo))
	if err != nil {
		return err
	}
	l.addChild(c)
	var addr string
	err = l.poll(ctx, c, "the lab page to listen", func() error {
		b, err := os.ReadFile(pageAddrFile(l.topo))
		if err != nil {
			return err
		}
		addr = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		return err
	}
	l.out.say("page: http://%s/", addr)
	return nil
}

// PageAddr returns the address the running lab's page listens on, or ""
// when it has none.
func PageAddr(topo Topology) string {
	b, err := os.ReadFile(pageAddrFile(topo))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// runPage serves the lab page of a running lab on addr until ctx ends.
func runPage(ctx context.Context, spec Spec, addr string, log *slog.Logger) error {
	topo, st, err := loadRunning(spec)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("lab page: listen on %s: %w", addr, err)
	}
	if err := writeFileAtomic(pageAddrFile(topo), []byte(ln.Addr().String()+"\n")); err != nil {
		ln.Close()
		return fmt.Errorf("lab page: record address: %w", err)
	}
	h := web.NewLab(func(ctx context.Context) web.LabPage { return fetchLab(ctx, topo, st) }, agentProxy(topo, log), log)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("lab page: serve: %w", err)
	}
	return nil
}

// probeTimeout bounds one agent's /probe.json: a round probes every peer,
// and an unreachable one costs its timeouts.
const probeTimeout = 15 * time.Second

// fetchLab asks every agent for its probed report, all at once.
func fetchLab(ctx context.Context, topo Topology, st state) web.LabPage {
	srcs := make([]web.LabSource, len(topo.Hosts))
	var wg sync.WaitGroup
	for i, h := range topo.Hosts {
		srcs[i] = web.LabSource{Name: h.Name, Link: "/h/" + h.Name + "/"}
		srcs[i].Subnet = prefixesText(st.Subnets[h.Name], st.Subnets6[h.Name])
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := fetchProbe(ctx, h)
			if err != nil {
				srcs[i].Err = err.Error()
				return
			}
			srcs[i].Report = p
		}()
	}
	wg.Wait()
	return web.BuildLab(topo.Spec.Prefix, time.Now(), srcs)
}

func fetchProbe(ctx context.Context, h Host) (*web.Page, error) {
	url := "http://" + h.Health.String() + "/probe.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := nsHTTPClient(h.NS, probeTimeout).Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask %s agent: %w", h.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask %s agent: GET %s: %s", h.Name, url, resp.Status)
	}
	var p web.Page
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&p); err != nil {
		return nil, fmt.Errorf("read %s agent's report: %w", h.Name, err)
	}
	return &p, nil
}

// agentProxy serves /h/NAME/PATH from NAME's agent's health listener at
// /PATH, dialled inside NAME's namespace.
func agentProxy(topo Topology, log *slog.Logger) http.Handler {
	proxies := map[string]*httputil.ReverseProxy{}
	for _, h := range topo.Hosts {
		hc := nsHTTPClient(h.NS, probeTimeout)
		proxies[h.Name] = &httputil.ReverseProxy{
			Transport: hc.Transport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = h.Health.String()
				pr.Out.Host = h.Health.String()
				pr.Out.URL.Path = "/" + strings.SplitN(strings.TrimPrefix(pr.In.URL.Path, "/h/"), "/", 2)[1]
				pr.Out.URL.RawPath = ""
			},
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _, found := strings.Cut(strings.TrimPrefix(r.URL.Path, "/h/"), "/")
		p, ok := proxies[name]
		if !found {
			if ok {
				// The agent's page loads its parts relative to itself.
				http.Redirect(w, r, "/h/"+name+"/", http.StatusMovedPermanently)
				return
			}
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		p.ServeHTTP(w, r)
	})
}
