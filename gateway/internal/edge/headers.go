package edge

import (
	"net/http"
	"net/textproto"
	"strings"
	"unicode"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pizzashop/pizzashop/pkg/cardscan"
	"github.com/pizzashop/pizzashop/pkg/grpcx"
)

// checkedHeaders are the headers that reach the services and their stores
// or logs; each must be a well-formed identifier (grpcx.CheckHeaderValue).
// grpc-gateway would drop a value outside printable ASCII silently, turning
// three retries with "Idempotency-Key: café-1" into three orders.
var checkedHeaders = []string{"Idempotency-Key", "X-Request-Id"}

// checkHeaders refuses a request whose checked headers are not well formed,
// or hold a card number, with 400 naming the header.
func (h *Handler) checkHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range checkedHeaders {
			for _, v := range r.Header.Values(name) {
				if err := grpcx.CheckHeaderValue(name, v); err != nil {
					st := status.New(codes.InvalidArgument, err.Error())
					if withField, derr := st.WithDetails(badRequest(name, err.Error())); derr == nil {
						st = withField
					}
					h.writeStatus(w, http.StatusBadRequest, st)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// secureHeaders gives every answer defaults a handler may override: no
// cache keeps it (orders, profiles and tokens are one customer's; the menu,
// pages and documents say no-cache and carry an ETag instead), and no
// browser sniffs it as another type than it says.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// badRequest is the field violation detail for a bad field or header.
func badRequest(field, desc string) *errdetails.BadRequest {
	return &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}}
}

// wellFormedID reports whether a request id or a path segment may be
// logged verbatim: 1 to 64 characters from [A-Za-z0-9._~:-], and no card
// number.
func wellFormedID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~:-", c) >= 0) {
			return false
		}
	}
	return !cardscan.Contains(s)
}

// safePath returns path with every segment that is not a well-formed id
// replaced by "{redacted}", for logs and error messages.
func safePath(path string) string {
	const maxSegments = 12
	segs := strings.Split(path, "/")
	if len(segs) > maxSegments {
		segs = append(segs[:maxSegments], "...")
	}
	// A card number split over segments ("4111/1111/...") hides in
	// well-formed ones: then every segment with a digit goes.
	split := cardscan.Contains(path)
	for i, seg := range segs {
		if seg != "" && seg != "..." && (!wellFormedID(seg) || split && strings.ContainsFunc(seg, unicode.IsDigit)) {
			segs[i] = "{redacted}"
		}
	}
	return strings.Join(segs, "/")
}

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
