package agent

import (
	"net/http"
	"net/http/pprof"
)

// profilingMux serves Go's profiles (net/http/pprof) under /debug/pprof/,
// for --debug-addr. The handlers are registered on a mux of their own,
// not on http.DefaultServeMux, so that they appear on no other listener.
func profilingMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
