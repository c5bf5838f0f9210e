// Package openapi holds the shop's API documents, generated from the protos
// by `make generate` (tools/apidocs): the OpenAPI 3.1 document of the REST
// API and the AsyncAPI 3 catalogue of the events on NATS JetStream. The
// gateway serves them at /openapi.json and /asyncapi.json and renders both
// at /docs.
package openapi

import _ "embed"

// Spec is the OpenAPI 3.1 document of the REST API, as JSON.
//
//go:embed pizzashop.openapi.json
var Spec []byte

// Events is the AsyncAPI 3 document of the events, as JSON.
//
//go:embed pizzashop.asyncapi.json
var Events []byte
