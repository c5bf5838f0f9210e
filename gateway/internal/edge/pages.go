package edge

import (
	"bytes"
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
// on every load, so a redeploy reaches it at the next reload.
func serveStatic(name, ctype string, body []byte) http.HandlerFunc {
	sum := sha256.Sum256(body)
	etag := `"web-` + hex.EncodeToString(sum[:8]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	}
}
