package lab

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/web"
)

// `weft lab up` with a page: the page process serves every host's row and
// a 3×3 matrix that turns all ok, proxies each agent's own page, and goes
// with the lab.
func TestUpServesLabPage(t *testing.T) {
	nstest.RequireRoot(t)
	spec := Spec{Prefix: testPrefix(), Hosts: 3, Pods: 1, StateRoot: t.TempDir()}
	topo, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	downOnCleanup(t, spec)
	out := &syncBuffer{}
	opts := labOptions(t, spec, out)
	opts.PageAddr = "127.0.0.1:0"
	_, err = Up(context.Background(), opts)
	t.Logf("up output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	addr := PageAddr(topo)
	if addr == "" || !strings.Contains(out.String(), "page: http://"+addr+"/") {
		t.Fatalf("no page address recorded (%q) or printed", addr)
	}
	base := "http://" + addr
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}

	// The first round of probes may meet neighbours not yet resolved;
	// the page refetches once per web.ProbeInterval.
	var lab web.LabPage
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/lab.json")
		if code != http.StatusOK {
			t.Fatalf("/lab.json: %d %s", code, body)
		}
		lab = web.LabPage{}
		if err := json.Unmarshal([]byte(body), &lab); err != nil {
			t.Fatalf("/lab.json: %v\n%s", err, body)
		}
		if lab.OK || time.Now().After(deadline) {
			break
		}
		time.Sleep(web.ProbeInterval / 5)
	}
	if !lab.OK {
		t.Errorf("lab not OK: %+v", lab)
	}
	if len(lab.Hosts) != 3 || len(lab.Matrix.Cells) != 3 {
		t.Fatalf("want 3 rows and a 3×3 matrix: %+v", lab)
	}
	for i, h := range topo.Hosts {
		if r := lab.Hosts[i]; r.Name != h.Name || !r.Ready || r.Subnet == "" || r.Problems != 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		if len(lab.Matrix.Cells[i]) != 3 {
			t.Fatalf("matrix row %d: %+v", i, lab.Matrix.Cells[i])
		}
		for j, c := range lab.Matrix.Cells[i] {
			want := web.CellOK
			if i == j {
				want = web.CellSelf
			}
			if c.State != want {
				t.Errorf("cell %s→%s: %s (%s), want %s", h.Name, topo.Hosts[j].Name, c.State, c.Text, want)
			}
		}
	}
	code, body := get("/")
	if code != http.StatusOK || strings.Count(body, `<td class="cell ok">ok `) != 6 {
		t.Errorf("page: %d, want 6 ok cells:\n%s", code, body)
	}
	for _, h := range topo.Hosts {
		if !strings.Contains(body, `data-host="`+h.Name+`"`) {
			t.Errorf("page lacks %s's row", h.Name)
		}
	}
	// Each agent's own page, which the root namespace cannot reach
	// directly, through the lab page.
	code, body = get("/h/h2/status.json")
	var p web.Page
	if err := json.Unmarshal([]byte(body), &p); code != http.StatusOK || err != nil || p.Host.Subnet != lab.Hosts[1].Subnet {
		t.Errorf("/h/h2/status.json: %d %v %s", code, err, body)
	}
	if code, body := get("/h/h2/"); code != http.StatusOK || !strings.Contains(body, `src="page.js"`) {
		t.Errorf("/h/h2/: %d %s", code, body)
	}

	pid, ok, err := readPIDFile(pagePIDFile(topo))
	if err != nil || !ok {
		t.Fatalf("page pid file: %d %v %v", pid, ok, err)
	}
	if err := Down(context.Background(), spec, nil); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("page process %d survived lab down", pid)
	}
	// The page names the state root, not the lab's state directory.
	if left := procsMentioning(t, spec.StateRoot); len(left) > 0 {
		t.Errorf("processes left after down:\n%s", strings.Join(left, "\n"))
	}
}
