package edge

import (
	"net/textproto"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// incomingHeader decides which request headers reach the services as gRPC
// metadata.
//
//   - Authorization always arrives as "authorization": grpc-gateway forwards
//     it itself, before asking this matcher, so the matcher refuses the
//     second copy ("grpcgateway-authorization") the default would add.
//   - Idempotency-Key as "idempotency-key" and X-Request-Id as "x-request-id".
//   - The standard headers grpc-gateway forwards by default, with the
//     "grpcgateway-" prefix (User-Agent, Accept, ...), except Cookie: the shop
//     uses no cookies, so they can only leak a browser's other sessions.
//   - Nothing else. In particular "Grpc-Metadata-*" headers are refused: they
//     would let a client set any metadata key, including the three above.
func incomingHeader(key string) (string, bool) {
	switch key = textproto.CanonicalMIMEHeaderKey(key); key {
	case "Idempotency-Key":
		return "idempotency-key", true
	case "X-Request-Id":
		return "x-request-id", true
	case "Authorization", "Cookie":
		return "", false
	}
	if strings.HasPrefix(key, runtime.MetadataHeaderPrefix) {
		return "", false
	}
	return runtime.DefaultHeaderMatcher(key)
}

// dropMetadata keeps the services' response metadata (headers and trailers)
// inside: grpc-gateway would otherwise copy all of it, content-type included,
// into Grpc-Metadata-* response headers. Nothing in the API needs it yet.
func dropMetadata(string) (string, bool) { return "", false }
