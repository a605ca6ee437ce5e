package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/status"
)

var labSubnets = []string{"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}

// probed is host i's report in a 3-host lab where every probe answered,
// except those to the subnets in lost.
func probed(i int, lost ...string) *Page {
	p := &Page{Report: status.Report{Backend: "host-gw", Checked: true,
		Host: status.Host{Subnet: labSubnets[i], PublicIP: "10.4.7.2" + string(rune('1'+i))}},
		Agent: Agent{Ready: true}}
	for j, s := range labSubnets {
		row := status.Row{Subnet: s, Self: i == j}
		if i != j {
			rtt := 0.25
			row.Check = &status.Check{Reply: true, RTTms: &rtt}
			for _, l := range lost {
				if l == s {
					row.Check = &status.Check{Reply: false}
					row.Problems = []status.Problem{{Code: "unreachable", Message: "no route to " + s}}
				}
			}
		}
		p.Leases = append(p.Leases, row)
	}
	return p
}

func labSources(reports ...*Page) []LabSource {
	var srcs []LabSource
	for i, r := range reports {
		name := "h" + string(rune('1'+i))
		src := LabSource{Name: name, Link: "/h/" + name + "/", Report: r}
		if i < len(labSubnets) {
			src.Subnet = labSubnets[i]
		}
		srcs = append(srcs, src)
	}
	return srcs
}

// The matrix is N×N with the diagonal as self, each cell read from the
// row host's probe of the column host's subnet, in words.
func TestBuildLabMatrix(t *testing.T) {
	p := BuildLab("t", t0, labSources(probed(0), probed(1, labSubnets[2]), nil))
	if len(p.Hosts) != 3 || len(p.Matrix.Cells) != 3 {
		t.Fatalf("want 3 hosts and 3 matrix rows, got %d and %d", len(p.Hosts), len(p.Matrix.Cells))
	}
	want := [][]string{
		{CellSelf, CellOK, CellOK},
		{CellOK, CellSelf, CellFailed},
		{CellUnknown, CellUnknown, CellSelf},
	}
	for i, row := range p.Matrix.Cells {
		if len(row) != 3 {
			t.Fatalf("row %d has %d cells", i, len(row))
		}
		for j, c := range row {
			if c.State != want[i][j] {
				t.Errorf("cell %d→%d: state %q, want %q (%s)", i, j, c.State, want[i][j], c.Text)
			}
		}
	}
	if got := p.Matrix.Cells[0][1].Text; got != "ok 0.25 ms" {
		t.Errorf("ok cell text %q", got)
	}
	if got := p.Matrix.Cells[1][2].Text; got != "failed: no route to 10.244.3.0/24" {
		t.Errorf("failed cell text %q", got)
	}
	if p.OK {
		t.Error("lab with a failed cell and a missing report is OK")
	}
	if p.Hosts[2].Error == "" || p.Hosts[0].Subnet != labSubnets[0] || !p.Hosts[1].Ready {
		t.Errorf("rows: %+v", p.Hosts)
	}
	if all := BuildLab("t", t0, labSources(probed(0), probed(1), probed(2))); !all.OK {
		t.Errorf("all-ok lab is not OK: %+v", all)
	}
}

// The page renders every host's row and every cell as text, and /lab.json
// carries the same; probes are fetched at most once per ProbeInterval.
func TestLabHandler(t *testing.T) {
	fetches := 0
	fetch := func(context.Context) LabPage {
		fetches++
		return BuildLab("t", t0, labSources(probed(0), probed(1, labSubnets[0]), probed(2)))
	}
	agents := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("agent " + r.URL.Path)) })
	h := NewLab(fetch, agents, nil)
	h.now = func() time.Time { return t0 }
	res, body := get(t, h, http.MethodGet, "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", res.StatusCode)
	}
	for _, s := range []string{`data-host="h1"`, `data-host="h2"`, `data-host="h3"`, `href="/h/h2/"`,
		`<td class="cell failed">failed: no route to 10.244.1.0/24</td>`, `<td class="cell ok">ok 0.25 ms</td>`} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	if n := strings.Count(body, `class="cell `); n != 9 {
		t.Errorf("%d matrix cells, want 9", n)
	}
	_, body = get(t, h, http.MethodGet, "/lab.json")
	var lp LabPage
	if err := json.Unmarshal([]byte(body), &lp); err != nil {
		t.Fatal(err)
	}
	if len(lp.Hosts) != 3 || lp.Matrix.Cells[1][0].State != CellFailed {
		t.Errorf("/lab.json: %s", body)
	}
	if fetches != 1 {
		t.Errorf("%d fetches within one ProbeInterval, want 1", fetches)
	}
	if _, body := get(t, h, http.MethodGet, "/h/h1/status.json"); body != "agent /h/h1/status.json" {
		t.Errorf("/h/ not handed to the agents' proxy: %q", body)
	}
	if res, _ := get(t, h, http.MethodPost, "/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", res.StatusCode)
	}
	for _, a := range []string{"/lab.js", "/page.css"} {
		if res, _ := get(t, h, http.MethodGet, a); res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", a, res.StatusCode)
		}
	}
}

// The agents' reports come over the network: whatever they decode to,
// BuildLab gives an N×N matrix and renders.
func FuzzBuildLab(f *testing.F) {
	seed, _ := json.Marshal([]*Page{probed(0), probed(1, labSubnets[2]), nil})
	f.Add(seed)
	f.Add([]byte(`[{"leases":[{"subnet":"","check":{}}]},null]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var reports []*Page
		if json.Unmarshal(b, &reports) != nil || len(reports) > 20 {
			return
		}
		srcs := labSources(reports...)
		p := BuildLab("f", t0, srcs)
		if len(p.Matrix.Cells) != len(srcs) {
			t.Fatalf("%d matrix rows for %d hosts", len(p.Matrix.Cells), len(srcs))
		}
		for i, row := range p.Matrix.Cells {
			if len(row) != len(srcs) || row[i].State != CellSelf {
				t.Fatalf("row %d: %+v", i, row)
			}
		}
		if err := labTmpl.Execute(io.Discard, p); err != nil {
			t.Fatal(err)
		}
	})
}

// A dual-stack peer whose IPv6 probe fails while IPv4's answers is a
// failed cell, in the IPv6 side's words.
func TestLabCellFailsOnTheIPv6Side(t *testing.T) {
	r := probed(0)
	rtt := 0.25
	r.Leases[1].CheckIPv6 = &status.Check{Family: "IPv6", NoRoute: true}
	r.Leases[1].Problems = []status.Problem{{Code: status.CodeNoRoute, Message: "IPv6: no route to fd00:10:244:2::/64"}}
	r.Leases[2].CheckIPv6 = &status.Check{Family: "IPv6", Reply: true, RTTms: &rtt}
	p := BuildLab("t", t0, labSources(r, probed(1), probed(2)))
	if c := p.Matrix.Cells[0][1]; c.State != CellFailed || c.Text != "failed: IPv6: no route to fd00:10:244:2::/64" {
		t.Errorf("cell h1→h2: %+v; want failed in the IPv6 side's words", c)
	}
	if c := p.Matrix.Cells[0][2]; c.State != CellOK {
		t.Errorf("cell h1→h3, ok over both families: %+v", c)
	}
}
