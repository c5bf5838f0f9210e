// Package openapi holds the OpenAPI document of the REST API. The document is
// generated from the protos by `make generate`; the gateway serves it at
// /openapi.json.
package openapi

import _ "embed"

// Spec is the OpenAPI 2.0 (swagger) document, as JSON.
//
//go:embed pizzashop.swagger.json
var Spec []byte
