// Package web holds the gateway's static pages, embedded in the binary: the
// storefront (the home page), the menu manager, the kitchen display and the
// delivery board, with their scripts, style sheets and icons. The pages are public and hold no data; everything
// they show comes from the authenticated REST API and its live streams.
package web

import "embed"

// Files holds the pages (*.html) and their assets. The gateway serves the
// pages at their own paths and every other file under /web/.
//
//go:embed *.html *.css *.js *.svg
var Files embed.FS
