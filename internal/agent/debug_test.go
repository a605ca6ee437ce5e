package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The profiling mux serves the pprof index and a goroutine profile.
func TestProfilingMuxServesPprof(t *testing.T) {
	srv := httptest.NewServer(profilingMux())
	defer srv.Close()
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "TestProfilingMuxServesPprof",
		"/debug/pprof/cmdline":           "agent.test",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want 200 with %q in the body", path, resp.StatusCode, want)
		}
	}
}
