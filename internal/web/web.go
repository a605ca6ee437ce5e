// Package web serves the agent's page: this host and every peer as the
// agent sees them, at / as server-rendered HTML that works without
// JavaScript, and at /status.json as the report of `weft status -o json`
// with an "agent" object added. Both come from one Page value, so scripts
// and the page never disagree.
//
// Everything is embedded; the page loads nothing from elsewhere. Only GET
// and HEAD are served. The report is rebuilt at most once per MinInterval
// however many viewers poll, because each build reads the kernel.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/status"
)

// Page is what / shows and /status.json returns. Its JSON is the report's
// (the embedded fields come out at the top level, so it decodes into a
// status.Report) plus "agent".
type Page struct {
	status.Report
	Agent Agent `json:"agent"`
}

// Agent is what only the running agent knows.
type Agent struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Ready         bool      `json:"ready"`
	// NotReady says why the agent is not ready; empty when it is.
	NotReady string `json:"not_ready,omitempty"`
	// Error says why the report is empty: the agent has not read the
	// network config yet, or the kernel could not be read.
	Error  string  `json:"error,omitempty"`
	Events []Event `json:"events"`
}

// Builder makes a fresh Page. It must not put secrets in it.
type Builder func(ctx context.Context) Page

// MinInterval is the least time between two builds.
const MinInterval = time.Second

// ProbeInterval is the least time between two rounds of probes, however
// many pages are open: each round sends a few packets to every peer.
const ProbeInterval = 5 * time.Second

//go:embed page.html.tmpl page.js page.css lab.html.tmpl lab.js
var assets embed.FS

var tmpl = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"duration": tmplDuration,
	"clock":    tmplClock,
	"state":    rowState,
	"reason":   rowReason,
	"deref":    func(p *int64) int64 { return *p },
}).ParseFS(assets, "page.html.tmpl"))

// Handler serves /, /status.json, /page.js and /page.css from build, and
// /probe.json when WithProbe gave it a prober.
type Handler struct {
	build Builder
	log   *slog.Logger
	now   func() time.Time

	built throttled[Page]

	probe  Builder // nil: no /probe.json
	probes throttled[Page]
}

// throttled keeps the last result of an expensive call (a report build, a
// round of probes) and makes it again at most once per interval, however
// many viewers ask; callers wait for a round already running.
type throttled[T any] struct {
	mu   sync.Mutex
	last T
	at   time.Time
}

func (c *throttled[T]) get(now time.Time, every time.Duration, make func() T) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || now.Sub(c.at) >= every {
		c.last, c.at = make(), now
	}
	return c.last
}

// readOnly answers anything but GET and HEAD with 405 and reports whether
// the request may go on; the pages change nothing.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only: only GET and HEAD", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

// secureHeaders: the pages are about the network; no one should frame
// them or run scripts from elsewhere in them, and nothing is cached.
func secureHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
}

// renderHTML executes t with data and writes the page, or a 500 naming
// what could not be rendered.
func renderHTML(w http.ResponseWriter, log *slog.Logger, what string, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		log.Error("render the "+what, "err", err.Error())
		http.Error(w, "cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// WithProbe serves /probe.json from probe, a Builder whose report carries
// status's --check probes. Nothing is probed until a viewer asks (the
// page's script does while it is open), and then at most once per
// ProbeInterval.
func (h *Handler) WithProbe(probe Builder) *Handler {
	h.probe = probe
	return h
}

func (h *Handler) probed(ctx context.Context) Page {
	return h.probes.get(h.now(), ProbeInterval, func() Page { return h.probe(ctx) })
}

// New returns the handler; log may be nil.
func New(build Builder, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	return &Handler{build: build, log: log, now: time.Now}
}

func (h *Handler) page(ctx context.Context) Page {
	return h.built.get(h.now(), MinInterval, func() Page { return h.build(ctx) })
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !readOnly(w, r) {
		return
	}
	secureHeaders(w)
	switch r.URL.Path {
	case "/":
		data := struct {
			Page
			Port string // of this listener, for links to peers' pages
		}{h.page(r.Context()), listenPort(r)}
		renderHTML(w, h.log, "status page", tmpl, data)
	case "/status.json":
		writeJSON(w, h.page(r.Context()))
	case "/probe.json":
		if h.probe == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, h.probed(r.Context()))
	case "/page.js":
		h.asset(w, r, "page.js", "text/javascript; charset=utf-8")
	case "/page.css":
		h.asset(w, r, "page.css", "text/css; charset=utf-8")
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, p any) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		http.Error(w, "cannot encode the report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

func tmplDuration(s int64) string { return status.FormatDuration(time.Duration(s) * time.Second) }

func tmplClock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func (h *Handler) asset(w http.ResponseWriter, _ *http.Request, name, typ string) {
	serveAsset(w, name, typ)
}

func serveAsset(w http.ResponseWriter, name, typ string) {
	b, err := assets.ReadFile(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", typ)
	_, _ = w.Write(b)
}

// listenPort is the port the viewer reached this page on; peers serve
// theirs on the same one.
func listenPort(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			return p
		}
	}
	if _, p, err := net.SplitHostPort(r.Host); err == nil {
		return p
	}
	return "80"
}

// rowState is a row's kernel state in one word: ok, or the state of its
// first entry that is not ok (missing, wrong), or "problem" when the
// problem is not a kernel entry (an expired lease, a backend mismatch).
func rowState(r status.Row) string {
	if r.Self {
		return "this host"
	}
	for _, e := range r.Entries {
		if e.State != status.StateOK {
			return e.State
		}
	}
	if len(r.Problems) > 0 {
		return "problem"
	}
	return status.StateOK
}

// rowReason is the first problem's explanation, as weft status gives it.
func rowReason(r status.Row) string {
	if len(r.Problems) == 0 {
		return ""
	}
	return r.Problems[0].Message
}
