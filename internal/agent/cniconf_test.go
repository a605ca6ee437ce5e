package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A conflist of another network that sorts before weft's is an error
// naming the file and what to do, once (and again after cniConfRepeat),
// an event on the page, and a line when it is gone.
func TestCNIConfWatchNamesAForeignConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-flannel.conflist", `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{}},{"type":"portmap"}]}`)
	var logs bytes.Buffer
	now := time.Unix(1_000_000, 0)
	w := &cniConfWatch{dir: dir, log: slog.New(slog.NewTextHandler(&logs, nil)), page: &pageView{}, now: func() time.Time { return now }}

	w.check()
	if logs.Len() != 0 || len(w.page.events.List()) != 0 {
		t.Fatalf("weft's config alone: logged %q, events %v", logs.String(), w.page.events.List())
	}

	write("05-other.conflist", `{"name":"other","cniVersion":"0.3.1","plugins":[{"type":"calico"}]}`)
	w.check()
	w.check()
	line := logs.String()
	if strings.Count(line, "level=ERROR") != 1 || !strings.Contains(line, filepath.Join(dir, "05-other.conflist")) ||
		!strings.Contains(line, "sorts before weft's 10-flannel.conflist") || !strings.Contains(line, "remove it") {
		t.Fatalf("want one error naming the file and what to do, got:\n%s", line)
	}
	if ev := w.page.events.List(); len(ev) != 1 || !strings.Contains(ev[0].Message, "05-other.conflist") {
		t.Fatalf("page events: %v", ev)
	}

	now = now.Add(cniConfRepeat)
	w.check()
	if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
		t.Fatalf("after %v the conflict is logged again: %d errors in all", cniConfRepeat, n)
	}

	if err := os.Remove(filepath.Join(dir, "05-other.conflist")); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	w.check()
	if !strings.Contains(logs.String(), "level=INFO") || !strings.Contains(logs.String(), "10-flannel.conflist") {
		t.Fatalf("the conflict's end: %q", logs.String())
	}
	if ev := w.page.events.List(); len(ev) != 2 {
		t.Fatalf("page events after the end: %v", ev)
	}
}
