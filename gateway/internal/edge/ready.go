package edge

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// upstream is one service the gateway forwards to, probed for readiness.
type upstream struct {
	name   string
	health healthpb.HealthClient
}

func newUpstream(name string, conn *grpc.ClientConn) upstream {
	return upstream{name: name, health: healthpb.NewHealthClient(conn)}
}

// readiness answers /readyz: ready while the gateway is not shutting down and
// every upstream answers grpc.health.v1 Check (service "") with SERVING
// within the timeout. A result is reused for ttl, and concurrent probes wait
// for the one in flight, so a probe storm costs one check per upstream.
type readiness struct {
	upstreams    []upstream
	timeout      time.Duration
	ttl          time.Duration
	shuttingDown atomic.Bool

	mu      sync.Mutex // held while checking
	last    readyReport
	checked time.Time
}

// readyReport is the /readyz body.
type readyReport struct {
	// Status is "ready", "not_ready" or "shutting_down".
	Status    string           `json:"status"`
	Upstreams []upstreamReport `json:"upstreams,omitempty"`
}

type upstreamReport struct {
	Name string `json:"name"`
	// Status is the health status (SERVING, NOT_SERVING, ...) or, when the
	// check failed, its gRPC code (Unavailable, DeadlineExceeded, ...).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func newReadiness(upstreams []upstream, timeout, ttl time.Duration) *readiness {
	return &readiness{upstreams: upstreams, timeout: timeout, ttl: ttl}
}

func (rd *readiness) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rep := rd.report(r.Context())
	code := http.StatusOK
	if rep.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(rep)
}

func (rd *readiness) report(ctx context.Context) readyReport {
	if rd.shuttingDown.Load() {
		return readyReport{Status: "shutting_down"}
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.checked.IsZero() && time.Since(rd.checked) < rd.ttl {
		return rd.last
	}
	// The result is shared, so one caller going away must not spoil it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rd.timeout)
	defer cancel()
	rep := readyReport{Status: "ready", Upstreams: make([]upstreamReport, len(rd.upstreams))}
	var wg sync.WaitGroup
	for i, u := range rd.upstreams {
		wg.Go(func() { rep.Upstreams[i] = check(ctx, u) })
	}
	wg.Wait()
	for _, u := range rep.Upstreams {
		if u.Status != healthpb.HealthCheckResponse_SERVING.String() {
			rep.Status = "not_ready"
		}
	}
	rd.last, rd.checked = rep, time.Now()
	return rep
}

func check(ctx context.Context, u upstream) upstreamReport {
	resp, err := u.health.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		st := status.Convert(err)
		return upstreamReport{Name: u.name, Status: st.Code().String(), Error: st.Message()}
	}
	return upstreamReport{Name: u.name, Status: resp.GetStatus().String()}
}
