package edge

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pizzashop/pizzashop/pkg/cardscan"
)

// checkQuery refuses, with 400 and before anything else reads it, a query
// string that does not parse or that holds a card number in a parameter's
// name or value: on every route, including those that read no query, so a
// card number in a URL is never accepted. The answer names the parameter
// (its name, unless the name is the card number) but never quotes a value.
func (h *Handler) checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" {
			next.ServeHTTP(w, r)
			return
		}
		values, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			h.writeStatus(w, http.StatusBadRequest, status.New(codes.InvalidArgument,
				"malformed query string: use key=value pairs joined by &, with % escapes of two hex digits"))
			return
		}
		for key, vs := range values {
			found := cardscan.Contains(key)
			for _, v := range vs {
				found = found || cardscan.Contains(v)
			}
			if !found {
				continue
			}
			field := "query string"
			if wellFormedID(key) {
				field = "query parameter " + key
			}
			msg := field + ": " + cardscan.Refusal
			st := status.New(codes.InvalidArgument, msg)
			if withField, derr := st.WithDetails(badRequest(field, msg)); derr == nil {
				st = withField
			}
			h.writeStatus(w, http.StatusBadRequest, st)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// strictQuery is grpc-gateway's query parser, except that a parameter that
// names no field of the request is an error naming it instead of being
// dropped: "?pagesize=5" must not quietly return the default page.
type strictQuery struct{ runtime.DefaultQueryParser }

// mapKey matches grpc-gateway's map parameter syntax, "field[key]".
var mapKey = regexp.MustCompile(`^(.*)\[(.*)\]$`)

func (q *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	for key := range values {
		name := key
		if m := mapKey.FindStringSubmatch(key); len(m) == 3 {
			name = m[1]
		}
		if !hasFieldPath(msg.ProtoReflect().Descriptor(), strings.Split(name, ".")) {
			if !wellFormedID(key) {
				return fmt.Errorf("unknown query parameter")
			}
			return fmt.Errorf("unknown query parameter %q", key)
		}
	}
	return q.DefaultQueryParser.Parse(msg, values, filter)
}

// hasFieldPath reports whether path names a field of md, each part by its
// proto or JSON name, through singular message fields.
func hasFieldPath(md protoreflect.MessageDescriptor, path []string) bool {
	for i, part := range path {
		fields := md.Fields()
		fd := fields.ByTextName(part)
		if fd == nil {
			fd = fields.ByJSONName(part)
		}
		if fd == nil {
			return false
		}
		if i == len(path)-1 {
			return true
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return false
		}
		md = fd.Message()
	}
	return false
}
