package app

import (
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
)

// PprofEnv turns on the Go profiler endpoints beside /metrics when "true".
// They are off by default: a profile shows how the process works, and the
// metrics port is reachable by whatever scrapes it.
const PprofEnv = "PIZZASHOP_PPROF"

// HandleProfiler adds /debug/pprof/ to mux when PIZZASHOP_PPROF=true, so
// where the CPU of an order goes can be measured instead of guessed:
//
//	go tool pprof 'http://127.0.0.1:9202/debug/pprof/profile?seconds=20'
func HandleProfiler(mux *http.ServeMux) {
	if os.Getenv(PprofEnv) != "true" {
		return
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// WithProfiler serves /debug/pprof/ itself and everything else with next,
// when PIZZASHOP_PPROF=true; otherwise it returns next. It is for a process
// without a metrics port of its own (the gateway serves /metrics on its
// HTTP address): the profiler stays out of next's routes, logs and traces.
func WithProfiler(next http.Handler) http.Handler {
	if os.Getenv(PprofEnv) != "true" {
		return next
	}
	mux := http.NewServeMux()
	HandleProfiler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			mux.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
