package edge

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
)

// GET /v1/menu is cacheable: the response carries ETag "menu-v<version>" and
// Cache-Control: no-cache (clients may keep it but must revalidate), and a
// request whose If-None-Match holds that tag gets 304 with no body. The menu
// is still read from the menu service; a 304 saves encoding it as JSON and
// sending it.

// conditional carries a GET's If-None-Match to menuETag, and menuETag's
// verdict on to skipEncoding; grpc-gateway hands both only the context.
type conditional struct {
	ifNoneMatch string
	notModified bool
}

type conditionalKey struct{}

// conditionalGET puts a conditional GET's If-None-Match in the context.
// Requests without the header pay nothing.
func conditionalGET(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if r.Method == http.MethodGet {
			if inm := r.Header.Get("If-None-Match"); inm != "" {
				r = r.WithContext(context.WithValue(r.Context(), conditionalKey{}, &conditional{ifNoneMatch: inm}))
			}
		}
		next(w, r, params)
	}
}

// menuETag is a forward-response option: it runs on every response before
// its body is encoded. On GetMenu it sets the ETag and, when the client's
// copy is current, sends 304 itself; grpc-gateway then gets
// http.ErrBodyNotAllowed writing the body, which it ignores by design.
func menuETag(ctx context.Context, w http.ResponseWriter, resp proto.Message) error {
	// resp is grpc-gateway's wrapper around *GetMenuResponse, hence the
	// interface rather than a type assertion.
	m, ok := resp.(interface{ GetMenu() *menuv1.Menu })
	if !ok || m.GetMenu() == nil {
		return nil
	}
	if rpc, _ := runtime.RPCMethod(ctx); rpc != menuv1.MenuService_GetMenu_FullMethodName {
		return nil
	}
	etag := `"menu-v` + strconv.FormatInt(m.GetMenu().GetVersion(), 10) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	if c, ok := ctx.Value(conditionalKey{}).(*conditional); ok && etagMatch(c.ifNoneMatch, etag) {
		c.notModified = true
		h.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
	}
	return nil
}

// skipEncoding is the forward-response rewriter: after a 304 it swaps the
// response for an empty message, so the menu is not encoded for nothing.
func skipEncoding(ctx context.Context, resp proto.Message) (any, error) {
	if c, ok := ctx.Value(conditionalKey{}).(*conditional); ok && c.notModified {
		return &emptypb.Empty{}, nil
	}
	return resp, nil
}

// etagMatch reports whether an If-None-Match header value matches etag. It
// uses weak comparison, as RFC 9110 asks for If-None-Match: W/"x" matches
// "x". The header may list several tags, or be "*".
func etagMatch(header, etag string) bool {
	etag = strings.TrimPrefix(etag, "W/")
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
