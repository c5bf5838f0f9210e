package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonMarshaler is protojson with the shop's rules: responses are
// lowerCamelCase and show every field (so "available": false is visible);
// requests are strict, so a field the API does not have (a client-chosen
// "price" or "customerId") is an error that names it, not silently dropped.
type jsonMarshaler struct {
	runtime.JSONPb
}

func newJSONMarshaler() *jsonMarshaler {
	return &jsonMarshaler{runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Marshal is runtime.JSONPb's Marshal, byte for byte, without its detours
// on the two shapes the gateway answers with on every call: a message (a
// unary response), encoded straight into the returned slice instead of
// through a buffer, and a line of a live stream, which grpc-gateway wraps
// as {"result": message}. JSONPb encodes that wrapper with reflection and
// encoding/json, which re-parses the message's JSON to compact and
// HTML-escape it; streamLine does the same two passes without the rest.
func (m *jsonMarshaler) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case proto.Message:
		return m.message(v)
	case map[string]any:
		if len(v) == 1 && m.Indent == "" {
			if p, ok := v["result"].(proto.Message); ok {
				return m.streamLine(p)
			}
		}
	}
	return m.JSONPb.Marshal(v)
}

// streamLine encodes {"result": p} as JSONPb does: p's JSON, compacted, with
// <, >, &, U+2028 and U+2029 escaped as encoding/json escapes them.
func (m *jsonMarshaler) streamLine(p proto.Message) ([]byte, error) {
	if m.planned() {
		if plan := planFor(p.ProtoReflect().Descriptor()); plan != nil {
			const head, tail = `{"result":`, `}`
			b := append(make([]byte, 0, plan.size.Load()+int64(len(head)+len(tail))+64), head...)
			b, err := plan.append(b, p.ProtoReflect(), jsonStyle{html: true})
			if err == nil {
				plan.size.Store(int64(len(b)))
				return append(b, tail...), nil
			}
		}
	}
	inner, err := m.MarshalOptions.Marshal(p)
	if err != nil {
		return nil, err
	}
	const head, tail = `{"result":`, `}`
	var buf bytes.Buffer
	buf.Grow(len(head) + len(inner) + len(tail))
	buf.WriteString(head)
	if err := json.Compact(&buf, inner); err != nil {
		return nil, err
	}
	if needsHTMLEscape(buf.Bytes()[len(head):]) {
		compact := bytes.Clone(buf.Bytes()[len(head):])
		buf.Truncate(len(head))
		json.HTMLEscape(&buf, compact)
	}
	buf.WriteString(tail)
	return buf.Bytes(), nil
}

// message encodes a message with its jsonPlan when it has one, and with
// protojson otherwise or when the plan gives up on it.
func (m *jsonMarshaler) message(p proto.Message) ([]byte, error) {
	if m.planned() {
		if plan := planFor(p.ProtoReflect().Descriptor()); plan != nil {
			if b, err := plan.marshal(p.ProtoReflect(), jsonStyle{commaSpace: commaSpace}); err == nil {
				return b, nil
			}
		}
	}
	return m.MarshalOptions.Marshal(p)
}

// planned reports whether the options are the ones jsonPlan encodes with.
func (m *jsonMarshaler) planned() bool {
	o := m.MarshalOptions
	return o.EmitUnpopulated && !o.EmitDefaultValues && !o.UseProtoNames && !o.UseEnumNumbers &&
		!o.Multiline && o.Indent == "" && o.Resolver == nil && !o.AllowPartial
}

// needsHTMLEscape reports whether json.HTMLEscape would change b.
func needsHTMLEscape(b []byte) bool {
	return bytes.ContainsAny(b, "<>&\u2028\u2029")
}

// StreamContentType marks live streams as newline-delimited JSON.
func (*jsonMarshaler) StreamContentType(any) string { return "application/x-ndjson" }

// NewDecoder reads exactly one JSON value and turns decoding failures into
// messages a client can act on. The generated handlers wrap the returned
// error as INVALID_ARGUMENT, which becomes HTTP 400.
func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	d := json.NewDecoder(r)
	inner := runtime.DecoderWrapper{Decoder: d, UnmarshalOptions: m.UnmarshalOptions}
	return runtime.DecoderFunc(func(v any) error {
		if err := inner.Decode(v); err != nil {
			return bodyError(err)
		}
		if _, err := d.Token(); !errors.Is(err, io.EOF) {
			if err != nil {
				return bodyError(err)
			}
			return errors.New("malformed JSON in request body: unexpected data after the JSON object")
		}
		return nil
	})
}

// bodyError describes a request body decoding failure.
func bodyError(err error) error {
	var (
		syntax   *json.SyntaxError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return err // an empty body; the handlers accept it
	case errors.As(err, &tooLarge):
		return fmt.Errorf("request body is larger than %d bytes: %w", tooLarge.Limit, err)
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON in request body at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON in request body: unexpected end of input")
	}
	// protojson: unknown fields, wrong types, bad enum names. Its messages
	// start with "proto:" followed by a space or, at random, a no-break space
	// (to stop callers matching them); neither helps a client.
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	msg = strings.TrimPrefix(msg, "proto: ")
	return fmt.Errorf("invalid request body: %s", msg)
}
