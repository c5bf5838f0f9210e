package edge

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The web pages (the storefront at /, the menu manager, the kitchen display,
// the delivery board) are static files embedded in the binary (package
// gateway/web). They are public:
// they hold no data and get everything they show from the authenticated API.
// A page foo.html is served at /foo (index.html at /), every other file at
// /web/<name>.

// contentSecurityPolicy allows the pages nothing but the gateway itself: no
// inline or third-party script or style, no plugins, no framing, no form
// posts (the pages send their requests with fetch), no <base> rewrites. A
// flaw that let API data into the page as markup still could not run script.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// webTypes are the content types of the files the pages may use. A file of
// another kind in the web directory fails New, rather than being served with
// a guessed type.
var webTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// webRoutes returns a GET handler for every page and asset in files, by path.
func webRoutes(files fs.FS) (map[string]http.HandlerFunc, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("edge: web files: %w", err)
	}
	routes := make(map[string]http.HandlerFunc, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		ext := path.Ext(name)
		ctype, ok := webTypes[ext]
		if !ok {
			return nil, fmt.Errorf("edge: web file %s: no content type for %q", name, ext)
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, fmt.Errorf("edge: web file %s: %w", name, err)
		}
		route := "/web/" + name
		if ext == ".html" {
			route = "/" + strings.TrimSuffix(name, ext)
			if route == "/index" {
				route = "/"
			}
		}
		routes[route] = serveStatic(name, ctype, body)
	}
	return routes, nil
}

// serveStatic serves one embedded file. Cache-Control: no-cache with an ETag
// of the content lets a tablet keep the files and revalidate them with a 304
// on every load, so a redeploy reaches it at the next reload. Files are
// gzipped once, at start, for clients that accept it: the storefront's
// first load on a phone is then about a third of its size.
func serveStatic(name, ctype string, body []byte) http.HandlerFunc {
	sum := sha256.Sum256(body)
	etag := `"web-` + hex.EncodeToString(sum[:8]) + `"`
	gz := gzipped(body)
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Add("Vary", "Accept-Encoding")
		content := body
		if gz != nil && acceptsGzip(r) {
			// Each encoding is its own representation, with its own tag.
			content = gz
			h.Set("Content-Encoding", "gzip")
			h.Set("ETag", strings.TrimSuffix(etag, `"`)+`-gz"`)
		} else {
			h.Set("ETag", etag)
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(content))
	}
}

// gzipped returns body compressed, or nil when that saves too little to be
// worth it (icons).
func gzipped(body []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
	_, _ = zw.Write(body)                                    // writes to memory cannot fail
	_ = zw.Close()
	if buf.Len() > len(body)*9/10 {
		return nil
	}
	return buf.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}
