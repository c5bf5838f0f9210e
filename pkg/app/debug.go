package app

import (
	"net/http"
	"net/http/pprof"
	"os"
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
