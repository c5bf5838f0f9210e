package edge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// The API reference: /openapi.json (the REST API, OpenAPI 3.1) and
// /asyncapi.json (the events, AsyncAPI 3), both generated from the protos
// (gateway/openapi), and /docs, a page of gateway/web that renders the two
// with a small script of its own, under the same strict Content Security
// Policy as the other pages.

// serveDocument serves an API document with a content-derived ETag, so tools
// that poll it get 304 until the gateway is redeployed with a new one. Any
// origin may read it: it is public, and this lets tools hosted elsewhere
// load it from a browser.
func serveDocument(name string, doc []byte) http.HandlerFunc {
	sum := sha256.Sum256(doc)
	etag := `"` + name + `-` + hex.EncodeToString(sum[:8]) + `"`
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Access-Control-Allow-Origin", "*")
		http.ServeContent(w, r, name+".json", time.Time{}, bytes.NewReader(doc))
	}
}
