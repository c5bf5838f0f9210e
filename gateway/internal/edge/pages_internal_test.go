package edge

import (
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
