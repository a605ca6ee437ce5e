package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// pageRow is one row of the page's peer table as the browser shows it.
type pageRow struct {
	Subnet string `json:"subnet"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Reach  string `json:"reach"`
}

const readRows = `Array.from(document.querySelectorAll("#peers tbody tr")).map(function (r) {
  return {subnet: r.getAttribute("data-subnet"),
          state: r.querySelector("td.state").textContent,
          reason: r.querySelector("td.reason").textContent,
          reach: r.querySelector("td.reach").textContent};
})`

// h1's page in headless Chromium: it loads without a console error and
// shows every peer ok; a route to h3 pointed at the wrong host (which the
// agent cannot repair while h1 lacks its connected route) turns h3's row
// to "wrong" with status's reason, without a reload; the agent's repair
// turns it back to ok and shows up among the events. The reachability
// column, fed by status's probes while the page is open, shows each peer's
// RTT. With WEFT_SCREENSHOT_DIR set, it saves both states as page-ok.png
// and page-broken.png there.
func TestPageInBrowser(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "chromium")
	l := upLab(t, 3, 1) // a pod per host, so that each pod gateway answers the probes
	s1, s3 := subnetOf(t, l, "h1"), subnetOf(t, l, "h3")
	h1, _ := l.Topology().Host("h1")

	// The agent listens on h1's loopback; the browser runs here.
	url := forwardInto(t, h1.NS, h1.Health.String()) + "/"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bctx, consoleErrs := newBrowser(t, ctx)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open the page", chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#peers tbody tr")))

	rows := func() map[string]pageRow {
		rs, err := chromedp.Run(bctx, chromedp.Evaluate[[]pageRow](readRows))
		if err != nil {
			t.Fatalf("read the peer table: %v", err)
		}
		m := map[string]pageRow{}
		for _, r := range rs {
			m[r.Subnet] = r
		}
		return m
	}
	// waitRows polls the table the page's own script keeps current.
	waitRows := func(within time.Duration, cond func(map[string]pageRow) error) {
		t.Helper()
		nstest.Eventually(t, within, func() error { return cond(rows()) })
	}
	allOK := func(m map[string]pageRow) error {
		if len(m) != 3 {
			return fmt.Errorf("%d rows, want 3: %+v", len(m), m)
		}
		for s, r := range m {
			want := "ok"
			if s == s1.String() {
				want = "this host"
			}
			if r.State != want {
				return fmt.Errorf("row %s is %q (%s), want %q", s, r.State, r.Reason, want)
			}
		}
		return nil
	}
	waitRows(10*time.Second, allOK)
	// While the page is open, its script has the agent probe every peer.
	waitRows(15*time.Second, func(m map[string]pageRow) error {
		for s, r := range m {
			if s != s1.String() && !strings.HasPrefix(r.Reach, "reachable, RTT ") {
				return fmt.Errorf("row %s: reachability %q, want reachable with an RTT", s, r.Reach)
			}
		}
		return nil
	})
	screenshot(t, bctx, "page-ok.png")

	// Narrow screens scroll the table, not the page.
	do("narrow the screen", chromedp.EmulateViewport(375, 700))
	overflow, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatalf("measure the page: %v", err)
	}
	do("widen the screen", chromedp.EmulateViewport(1280, 800))
	if overflow {
		t.Errorf("the page is wider than a 375 px screen")
	}

	// Point h1's route to h3 at h2. The agent hears of a changed route at
	// once and would repair it within a millisecond, so first take away
	// h1's connected route to its segment: the kernel then refuses the
	// repair (h3 is not on a network of eth0) until the route is back,
	// and the page has time to show the wrong route.
	h2IP := hostIP(t, l, "h2")
	segment := h1.Addr.Masked().String()
	ipIn := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", h1.NS}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %q: %v: %s", args, err, out)
		}
	}
	ipIn("route", "del", segment, "dev", h1.Iface)
	ipIn("route", "replace", s3.String(), "via", h2IP.String(), "dev", h1.Iface, "proto", "87", "onlink")
	broken := time.Now()
	waitRows(8*time.Second, func(m map[string]pageRow) error {
		r := m[s3.String()]
		if r.State != "wrong" || !strings.Contains(r.Reason, "does not lead to the peer") {
			return fmt.Errorf("row %s is %q (%s), want wrong with status's reason", s3, r.State, r.Reason)
		}
		return nil
	})
	t.Logf("the page showed the wrong route after %v", time.Since(broken).Round(time.Millisecond))
	screenshot(t, bctx, "page-broken.png")

	// Nothing reports the connected route's return as a change of an
	// entry the agent planned; the reconcile period is 10 s.
	ipIn("route", "add", segment, "dev", h1.Iface, "proto", "kernel", "scope", "link", "src", h1.Addr.Addr().String())
	waitRows(25*time.Second, allOK)
	t.Logf("the page showed the repair after %v", time.Since(broken).Round(time.Millisecond))
	nstest.Eventually(t, 10*time.Second, func() error {
		events, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#events")))
		if err != nil {
			t.Fatalf("read the events: %v", err)
		}
		if !strings.Contains(events, "restored 1 route entry") {
			return fmt.Errorf("events lack the repair: %q", events)
		}
		return nil
	})

	if errs := consoleErrs(); len(errs) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(errs, "\n"))
	}
}

// screenshot saves the viewport as name under WEFT_SCREENSHOT_DIR, if set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("WEFT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
}

// forwardInto listens on the test's loopback and relays each connection to
// addr inside namespace ns; it returns the base URL and stops with the
// test.
func forwardInto(t *testing.T, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var up net.Conn
				err := netns.Do(ns, func() error {
					var err error
					up, err = net.DialTimeout("tcp", addr, 2*time.Second)
					return err
				})
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				relay := func(dst, src net.Conn) {
					_, _ = io.Copy(dst, src)
					// Half-close so the other direction ends as well.
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
					done <- struct{}{}
				}
				go relay(up, c)
				go relay(c, up)
				<-done
				<-done
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

const readMatrix = `Array.from(document.querySelectorAll("#matrix tbody tr")).map(function (r) {
  return Array.from(r.querySelectorAll("td")).map(function (c) { return c.className + "|" + c.textContent; });
})`

// The lab's page in headless Chromium: every host's row and a 3×3 matrix
// of ok cells; a prohibit route in h1 to h3's pod gateway turns that one
// cell to "failed" with the reason, without a reload, and removing it
// turns it back to ok.
func TestLabPageInBrowser(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "chromium")
	spec := lab.Spec{Prefix: nstest.UniqueName("it"), Hosts: 3, Pods: 1, Backend: "host-gw"}
	var out strings.Builder
	uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l, err := lab.Up(uctx, lab.Options{Spec: spec, WeftBinary: testbin.Weft(t), CNIBinDir: testbin.CNIDir(t),
		Out: &out, PageAddr: "127.0.0.1:0"})
	ucancel()
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	addr := lab.PageAddr(l.Topology())
	if !strings.Contains(out.String(), "page: http://"+addr+"/") {
		t.Fatalf("lab up did not print the page's address %q:\n%s", addr, out.String())
	}
	h1, _ := l.Topology().Host("h1")
	s3 := subnetOf(t, l, "h3")
	gw3 := s3.Addr().Next().String() // h3's pod gateway, what h1 probes

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bctx, consoleErrs := newBrowser(t, ctx)
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate("http://"+addr+"/"), chromedp.WaitVisible(chromedp.CSS("#matrix tbody tr"))); err != nil {
		t.Fatalf("open the lab page: %v", err)
	}
	hosts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#hosts tbody tr").length`))
	if err != nil || hosts != 3 {
		t.Fatalf("host rows: %d, %v; want 3", hosts, err)
	}
	// cellIs waits until the cell from row i to column j has the class
	// and text prefix, and every other off-diagonal cell is ok.
	cellIs := func(within time.Duration, i, j int, state, text string) {
		t.Helper()
		nstest.Eventually(t, within, func() error {
			m, err := chromedp.Run(bctx, chromedp.Evaluate[[][]string](readMatrix))
			if err != nil {
				t.Fatalf("read the matrix: %v", err)
			}
			if len(m) != 3 {
				return fmt.Errorf("matrix %v, want 3 rows", m)
			}
			for a, row := range m {
				if len(row) != 3 {
					return fmt.Errorf("matrix row %d: %v", a, row)
				}
				for b, c := range row {
					wantState, wantText := "cell ok", "ok "
					switch {
					case a == b:
						wantState, wantText = "cell self", "self"
					case a == i && b == j:
						wantState, wantText = "cell "+state, text
					}
					if !strings.HasPrefix(c, wantState+"|"+wantText) {
						return fmt.Errorf("cell %d→%d is %q, want %s|%s...", a, b, c, wantState, wantText)
					}
				}
			}
			return nil
		})
	}
	cellIs(10*time.Second, 0, 1, "ok", "ok ")
	screenshot(t, bctx, "lab-ok.png")

	// A prohibit route to h3's pod gateway is more specific than the
	// agent's route to h3's subnet, which it leaves alone.
	if out, err := exec.Command("ip", "-n", h1.NS, "route", "add", "prohibit", gw3+"/32").CombinedOutput(); err != nil {
		t.Fatalf("ip route add prohibit: %v: %s", err, out)
	}
	cellIs(20*time.Second, 0, 2, "failed", "failed: ")
	screenshot(t, bctx, "lab-broken.png")
	if out, err := exec.Command("ip", "-n", h1.NS, "route", "del", "prohibit", gw3+"/32").CombinedOutput(); err != nil {
		t.Fatalf("ip route del prohibit: %v: %s", err, out)
	}
	cellIs(20*time.Second, 0, 1, "ok", "ok ")

	if errs := consoleErrs(); len(errs) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(errs, "\n"))
	}
}

// newBrowser starts headless Chromium with the flags this machine's closed
// network needs (docs/page.md) and returns its context and a function
// that lists the console errors, warnings and exceptions seen so far; the
// console is read from the start, before any page loads.
func newBrowser(t *testing.T, ctx context.Context) (context.Context, func() []string) {
	t.Helper()
	actx, cancelA := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath("chromium"),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)

	// The console is read from before the page loads: a message the page
	// wrote before the subscription would be lost.
	var mu sync.Mutex
	var consoleErrs []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				consoleErrs = append(consoleErrs, m.String()+" "+m.URL)
				mu.Unlock()
			}
		}
	}()
	return bctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(consoleErrs)
	}
}
