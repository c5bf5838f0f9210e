package edge_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/pizzashop/pizzashop/gateway/web"
)

// wantCSP is the Content-Security-Policy of every page and asset: nothing
// but the gateway itself, no inline script or style, no framing.
const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var webTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// checkWebHeaders checks the headers every page and asset carries.
func checkWebHeaders(t *testing.T, what string, resp *http.Response, wantType string) {
	t.Helper()
	for _, h := range []struct{ name, want string }{
		{"Content-Type", wantType},
		{"Content-Security-Policy", wantCSP},
		{"X-Content-Type-Options", "nosniff"},
		{"X-Frame-Options", "DENY"},
		{"Referrer-Policy", "no-referrer"},
		{"Cache-Control", "no-cache"},
	} {
		if got := resp.Header.Get(h.name); got != h.want {
			t.Errorf("GET %s %s = %q, want %q", what, h.name, got, h.want)
		}
	}
	if resp.Header.Get("ETag") == "" {
		t.Errorf("GET %s has no ETag", what)
	}
}

// moduleImport finds the relative imports of a JavaScript module.
var moduleImport = regexp.MustCompile(`from '\./([a-z0-9-]+\.js)'`)

func TestWebPages(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		path      string
		wantLinks []string // hrefs the page must have
		wantIDs   []string // elements the page's script needs
	}{
		{"/", []string{"/kitchen", "/delivery", "/manage", "/v1/menu", "/openapi.json", "#/signin", "#/register"},
			[]string{"main", "builder", "pizza-list", "size-list", "topping-list", "topping-limit", "price", "to-checkout",
				"signin-form", "si-email", "si-password", "register-form", "rg-password", "checkout-form", "place",
				"view-order", "order-body", "cancel", "orders-list", "orders-more", "signout"}},
		{"/manage", []string{"/"}, []string{"signin-form", "token", "signout", "pizzas", "toppings", "add-pizza", "add-topping"}},
		{"/kitchen", []string{"/"}, []string{"signin-form", "token", "signout", "conn", "banner", "col-queued", "col-baking", "recent", "toasts", "reject-dialog"}},
		{"/delivery", []string{"/"}, []string{"signin-form", "token", "signout", "conn", "banner", "group-waiting", "group-out", "col-pickup", "recent", "toasts"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := s.do(t, "GET", tt.path, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s status = %d, want 200\n%s", tt.path, resp.StatusCode, body)
			}
			checkWebHeaders(t, tt.path, resp, webTypes[".html"])

			doc, err := html.Parse(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("GET %s: parse HTML: %v", tt.path, err)
			}
			links, ids := map[string]bool{}, map[string]bool{}
			var assets []string
			for n := range doc.Descendants() {
				if n.Type != html.ElementNode {
					continue
				}
				attr := map[string]string{}
				for _, a := range n.Attr {
					attr[a.Key] = a.Val
					// The CSP would block these anyway; the page must not need them.
					if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
						t.Errorf("GET %s: <%s %s=%q>: inline style or handler", tt.path, n.Data, a.Key, a.Val)
					}
				}
				ids[attr["id"]] = true
				switch n.Data {
				case "style":
					t.Errorf("GET %s: inline <style> element", tt.path)
				case "script":
					if attr["src"] == "" || n.FirstChild != nil {
						t.Errorf("GET %s: inline <script>", tt.path)
					}
					assets = append(assets, attr["src"])
				case "link", "img":
					assets = append(assets, attr["href"]+attr["src"])
				case "a":
					links[attr["href"]] = true
				}
			}
			for _, href := range tt.wantLinks {
				if !links[href] {
					t.Errorf("GET %s has no link to %s", tt.path, href)
				}
			}
			for _, id := range tt.wantIDs {
				if !ids[id] {
					t.Errorf("GET %s has no element #%s", tt.path, id)
				}
			}

			// Every asset the page loads, and every module those import.
			seen := map[string]bool{}
			for len(assets) > 0 {
				a := assets[0]
				assets = assets[1:]
				if seen[a] {
					continue
				}
				seen[a] = true
				if !strings.HasPrefix(a, "/web/") {
					t.Errorf("GET %s loads %q, want only /web/ assets", tt.path, a)
					continue
				}
				resp, body := s.do(t, "GET", a, nil, nil)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s (from %s) status = %d, want 200", a, tt.path, resp.StatusCode)
					continue
				}
				checkWebHeaders(t, a, resp, webTypes[path.Ext(a)])
				for _, m := range moduleImport.FindAllStringSubmatch(string(body), -1) {
					assets = append(assets, "/web/"+m[1])
				}
			}
		})
	}
}

func TestWebAssetRevalidation(t *testing.T) {
	s := newStack(t)
	resp, body := s.do(t, "GET", "/web/kitchen.js", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET /web/kitchen.js = %d with %d bytes, want 200 with the script", resp.StatusCode, len(body))
	}
	resp, body = s.do(t, "GET", "/web/kitchen.js", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET /web/kitchen.js with its ETag = %d with %d bytes, want 304 with none", resp.StatusCode, len(body))
	}
}

func TestWebUnknown(t *testing.T) {
	s := newStack(t)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/web/nope.js", http.StatusNotFound},
		{"GET", "/web/kitchen.html", http.StatusNotFound}, // pages live at their own paths
		{"GET", "/web/web.go", http.StatusNotFound},
		{"POST", "/kitchen", http.StatusMethodNotAllowed},
	} {
		resp, body := s.do(t, tt.method, tt.path, nil, nil)
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s status = %d, want %d\n%s", tt.method, tt.path, resp.StatusCode, tt.want, body)
			continue
		}
		decodeStatus(t, tt.method+" "+tt.path, body)
	}
}

// TestWebScriptsInsertOnlyText guards the rule that API data reaches the
// DOM as text: the scripts never parse strings as markup or code.
func TestWebScriptsInsertOnlyText(t *testing.T) {
	forbidden := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "createContextualFragment", "DOMParser"}
	scripts, err := fs.Glob(web.Files, "*.js")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("fs.Glob(web.Files, *.js) = %v, %v; want the page scripts", scripts, err)
	}
	for _, name := range scripts {
		src, err := fs.ReadFile(web.Files, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range forbidden {
			if bytes.Contains(src, []byte(f)) {
				t.Errorf("%s uses %s; build elements and set textContent instead", name, f)
			}
		}
	}
}

// TestWebGzip: clients that accept gzip get the files compressed, as their
// own representation with their own ETag; others get them as they are.
func TestWebGzip(t *testing.T) {
	s := newStack(t)
	want, err := fs.ReadFile(web.Files, "store.js")
	if err != nil {
		t.Fatal(err)
	}
	resp, plain := s.do(t, "GET", "/web/store.js", nil, http.Header{"Accept-Encoding": {"identity"}})
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(plain, want) {
		t.Fatalf("GET /web/store.js without gzip: Content-Encoding %q, %d bytes; want the file as it is (%d bytes)",
			resp.Header.Get("Content-Encoding"), len(plain), len(want))
	}
	plainTag := resp.Header.Get("ETag")

	resp, body := s.do(t, "GET", "/web/store.js", nil, http.Header{"Accept-Encoding": {"gzip, deflate, br"}})
	if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("GET /web/store.js with gzip: Content-Encoding %q, Vary %q; want gzip, Accept-Encoding",
			resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	checkWebHeaders(t, "/web/store.js (gzip)", resp, webTypes[".js"])
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("gzipped store.js decompresses to %d bytes (%v), want the file's %d", len(got), err, len(want))
	}
	if len(body) > len(want)/2 {
		t.Errorf("gzipped store.js is %d bytes of %d, want well under half", len(body), len(want))
	}
	gzTag := resp.Header.Get("ETag")
	if gzTag == plainTag || gzTag == "" {
		t.Errorf("ETag gzip %q, plain %q; want two different tags", gzTag, plainTag)
	}
	resp, body = s.do(t, "GET", "/web/store.js", nil, http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {gzTag}})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET /web/store.js with its gzip ETag = %d with %d bytes, want 304", resp.StatusCode, len(body))
	}
}
