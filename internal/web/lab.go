package web

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/status"
)

// LabSource is what the lab page learned of one host: the agent's probed
// report (its /probe.json), or why it could not be had.
type LabSource struct {
	Name string
	// Link is where the lab page shows that agent's own page.
	Link string
	// Subnet is the host's lease as the lab knows it, which finds the
	// host's column in the other reports when its own report is missing.
	Subnet string
	Report *Page
	Err    string
}

// LabPage is what the lab's / shows and /lab.json returns: one row per
// host and the N×N reachability matrix from every agent's probes.
type LabPage struct {
	Lab    string    `json:"lab"`
	Time   time.Time `json:"time"`
	OK     bool      `json:"ok"` // every host ready without problems and every cell ok
	Hosts  []LabRow  `json:"hosts"`
	Matrix Matrix    `json:"matrix"`
}

// LabRow is one host.
type LabRow struct {
	Name     string `json:"name"`
	Link     string `json:"link"`
	Subnet   string `json:"subnet,omitempty"`
	PublicIP string `json:"public_ip,omitempty"`
	Backend  string `json:"backend,omitempty"`
	// ExpiresIn is the seconds left on the host's own lease; nil when
	// unknown or when the lease does not expire.
	ExpiresIn *int64 `json:"expires_in_seconds,omitempty"`
	Ready     bool   `json:"ready"`
	NotReady  string `json:"not_ready,omitempty"`
	Problems  int    `json:"problem_count"`
	// Error says why the agent's report could not be fetched.
	Error string `json:"error,omitempty"`
}

// Matrix is reachability from each host (row) to each host (column), in
// the order of Hosts.
type Matrix struct {
	Hosts []string `json:"hosts"`
	Cells [][]Cell `json:"cells"`
}

// Cell states.
const (
	CellSelf    = "self"
	CellOK      = "ok"
	CellFailed  = "failed"
	CellUnknown = "unknown" // the source's report is missing, or has no probe of that peer
)

// Cell is one probe from a row's host to a column's host.
type Cell struct {
	State string   `json:"state"`
	RTTms *float64 `json:"rtt_ms,omitempty"`
	// Text is the state in words: "ok 0.12 ms", or the failure and status's
	// explanation for it.
	Text string `json:"text"`
}

// BuildLab makes the lab page from every host's report. A column's host is
// found in a row's report by its lease's subnet.
func BuildLab(lab string, now time.Time, srcs []LabSource) LabPage {
	p := LabPage{Lab: lab, Time: now, OK: true, Hosts: []LabRow{}, Matrix: Matrix{Hosts: []string{}, Cells: [][]Cell{}}}
	subnetOf := make([]string, len(srcs))
	for i, s := range srcs {
		row := LabRow{Name: s.Name, Link: s.Link, Subnet: s.Subnet, Error: s.Err}
		subnetOf[i] = s.Subnet
		if r := s.Report; r != nil {
			row.PublicIP, row.Backend = r.Host.PublicIP, r.Backend
			if r.Host.Subnet != "" {
				row.Subnet, subnetOf[i] = r.Host.Subnet, r.Host.Subnet
			}
			row.Ready, row.NotReady, row.Problems = r.Agent.Ready, r.Agent.NotReady, r.ProblemCount
			if row.Error == "" {
				row.Error = r.Agent.Error
			}
			for _, l := range r.Leases {
				if l.Self {
					row.ExpiresIn = l.ExpiresIn
				}
			}
		} else if row.Error == "" {
			row.Error = "no report"
		}
		if !row.Ready || row.Problems > 0 || row.Error != "" {
			p.OK = false
		}
		p.Hosts = append(p.Hosts, row)
		p.Matrix.Hosts = append(p.Matrix.Hosts, s.Name)
	}
	for i, s := range srcs {
		cells := make([]Cell, len(srcs))
		for j := range srcs {
			cells[j] = cellFor(s.Report, subnetOf[j], i == j)
			if cells[j].State != CellOK && cells[j].State != CellSelf {
				p.OK = false
			}
		}
		p.Matrix.Cells = append(p.Matrix.Cells, cells)
	}
	return p
}

// cellFor reads the probe of the peer with the given subnet out of a
// report, in the words the agent's own page uses.
func cellFor(r *Page, subnet string, self bool) Cell {
	if self {
		return Cell{State: CellSelf, Text: "self"}
	}
	if r == nil || subnet == "" {
		return Cell{State: CellUnknown, Text: "unknown: no report"}
	}
	for _, l := range r.Leases {
		if l.Subnet != subnet {
			continue
		}
		// A dual-stack peer is probed over each family; the cell fails
		// with the first family that does.
		c := l.Check
		if c == nil {
			return Cell{State: CellUnknown, Text: "not probed"}
		}
		if c6 := l.CheckIPv6; c6 != nil && passed(c) && !passed(c6) {
			c = c6
		}
		if passed(c) {
			t := "ok"
			if c.RTTms != nil {
				t = fmt.Sprintf("ok %.2f ms", *c.RTTms)
			}
			return Cell{State: CellOK, RTTms: c.RTTms, Text: t}
		}
		why := c.Error
		if n := len(l.Problems); n > 0 {
			why = l.Problems[n-1].Message
		}
		if why == "" {
			why = "no reply"
		}
		what := "failed: "
		if c.Reply {
			what = "failed: full-size packets lost: "
		}
		return Cell{State: CellFailed, Text: what + why}
	}
	return Cell{State: CellUnknown, Text: "unknown: no lease in this host's view"}
}

// passed reports whether a peer answered the probes of c: the echo, and
// the full-size one where it was tried.
func passed(c *status.Check) bool {
	return c.Reply && (c.FullSizeReply == nil || *c.FullSizeReply)
}

var labTmpl = template.Must(template.New("lab.html.tmpl").Funcs(template.FuncMap{
	"duration": tmplDuration,
	"clock":    tmplClock,
	"deref":    func(p *int64) int64 { return *p },
}).ParseFS(assets, "lab.html.tmpl"))

// LabHandler serves the lab's page: / and /lab.json from fetch, the shared
// assets, /lab.js, and everything under /h/ from agents (each agent's own
// page, proxied, since the agents listen where the viewer cannot reach).
// fetch probes every agent, so it runs at most once per ProbeInterval
// however many viewers there are.
type LabHandler struct {
	fetch  func(ctx context.Context) LabPage
	agents http.Handler
	log    *slog.Logger
	now    func() time.Time

	fetched throttled[LabPage]
}

// NewLab returns the lab page's handler; log may be nil.
func NewLab(fetch func(ctx context.Context) LabPage, agents http.Handler, log *slog.Logger) *LabHandler {
	if log == nil {
		log = slog.Default()
	}
	return &LabHandler{fetch: fetch, agents: agents, log: log, now: time.Now}
}

func (h *LabHandler) page(ctx context.Context) LabPage {
	return h.fetched.get(h.now(), ProbeInterval, func() LabPage { return h.fetch(ctx) })
}

// ServeHTTP implements http.Handler.
func (h *LabHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !readOnly(w, r) {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/h/") && h.agents != nil {
		h.agents.ServeHTTP(w, r)
		return
	}
	secureHeaders(w)
	switch r.URL.Path {
	case "/":
		renderHTML(w, h.log, "lab page", labTmpl, h.page(r.Context()))
	case "/lab.json":
		writeJSON(w, h.page(r.Context()))
	case "/page.css":
		serveAsset(w, "page.css", "text/css; charset=utf-8")
	case "/lab.js":
		serveAsset(w, "lab.js", "text/javascript; charset=utf-8")
	default:
		http.NotFound(w, r)
	}
}
