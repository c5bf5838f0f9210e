package edge

import "net/http"

// index is the gateway's home page: where to start. The kitchen display and
// the delivery board will be linked from here once they exist.
const index = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pizzashop</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; }
code { background: #f3f3f3; padding: 0 .25rem; }
</style>
</head>
<body>
<h1>Pizzashop</h1>
<p>The REST API of the shop. Send <code>Authorization: Bearer &lt;token&gt;</code> on calls that need a credential.</p>
<ul>
<li><a href="/v1/menu">/v1/menu</a>: the menu (no credential needed)</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI document of every route</li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a>: liveness and readiness</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
</ul>
</body>
</html>
`

func serveIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(index))
}
