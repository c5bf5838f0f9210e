package edge

import (
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestWebRoutes(t *testing.T) {
	routes, err := webRoutes(fstest.MapFS{
		"index.html": {Data: []byte("<!doctype html>")},
		"board.html": {Data: []byte("<!doctype html>")},
		"app.js":     {Data: []byte("export {};")},
	})
	if err != nil {
		t.Fatalf("webRoutes = %v", err)
	}
	for _, want := range []string{"/", "/board", "/web/app.js"} {
		if routes[want] == nil {
			t.Errorf("webRoutes has no route %s", want)
		}
	}
	if len(routes) != 3 {
		t.Errorf("webRoutes has %d routes, want 3", len(routes))
	}

	// A file of a kind the gateway has no content type for is an error at
	// start, not a guess at serve time.
	_, err = webRoutes(fstest.MapFS{"notes.txt": {Data: []byte("x")}})
	if err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("webRoutes(notes.txt) = %v, want an error naming the file", err)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for _, tt := range []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"gzip, deflate, br, zstd", true},
		{"br;q=1.0, GZIP;q=0.5", true},
		{"gzip;q=0", false},
		{"gzip; q=0.000", false},
		{"deflate, br", false},
		{"x-gzip", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			r.Header.Set("Accept-Encoding", tt.header)
		}
		if got := acceptsGzip(r); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
