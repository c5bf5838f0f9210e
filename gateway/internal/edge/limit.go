package edge

import (
	"errors"
	"io"
	"net/http"
)

// limitBody rejects request bodies over h.maxBody with 413. A declared
// Content-Length is checked before anything is read; a chunked body is cut
// off by http.MaxBytesReader as it is read, and serveError turns the decode
// failure that follows into 413 too. Requests without a body (every GET,
// live streams included) pass untouched.
func (h *Handler) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > h.maxBody {
			h.writeStatus(w, http.StatusRequestEntityTooLarge, h.tooLargeStatus())
			return
		}
		// MaxBytesReader tells the server to close the connection after an
		// over-limit body, but only through the server's own writer.
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(innermost(w), r.Body, h.maxBody)}
		next.ServeHTTP(w, r)
	})
}

// limitedBody remembers that the limit was hit: the generated handlers turn
// the read error into a plain INVALID_ARGUMENT, losing its type.
type limitedBody struct {
	io.ReadCloser
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		b.exceeded = true
	}
	return n, err
}

// tooLarge reports whether err, or the failed read behind it, is the body
// limit. r may be a copy of the request limitBody saw; it shares the body.
func tooLarge(r *http.Request, err error) bool {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return true
	}
	b, ok := r.Body.(*limitedBody)
	return ok && b.exceeded
}

// innermost unwraps middleware response writers down to the server's own.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
