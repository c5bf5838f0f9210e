package edge

import (
	"log/slog"
	"net/http"
	"time"
)

// accessLog writes one line per request: method, path, status, duration_ms,
// bytes and the client's X-Request-Id. It never logs headers, query strings
// or bodies, so no credential can reach the log, and logs path segments and
// request ids verbatim only when they are well-formed ids without a card
// number (see safePath). Logged with the request
// context, the line carries the span's trace_id. Probes log at debug.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)

		level := slog.LevelInfo
		if isProbe(r.URL.Path) {
			level = slog.LevelDebug
		}
		ctx := r.Context()
		if !log.Enabled(ctx, level) {
			return
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", safePath(r.URL.Path)),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", rec.bytes),
		}
		if id := r.Header.Get("X-Request-Id"); id != "" {
			if wellFormedID(id) {
				attrs = append(attrs, slog.String("request_id", id))
			} else {
				attrs = append(attrs, slog.Bool("request_id_malformed", true))
			}
		}
		log.LogAttrs(ctx, level, "http request", attrs...)
	})
}

// recorder notes the status and size of a response. It flushes and unwraps,
// so live streams and http.ResponseController work through it.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher.
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
