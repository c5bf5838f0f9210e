package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Extensions that the protos put on an operation (openapiv3_operation
// extensions) for this program to turn into OpenAPI. They do not reach the
// document.
const (
	// extResponses lists the statuses an operation answers besides its
	// success, space-separated: "400 401 403 404 409 413 503". The ones the
	// gateway itself answers for any request (gatewayStatuses) are added.
	extResponses = "x-pizzashop-responses"
	// extHeader names a request header the operation reads (see
	// requestHeaders).
	extHeader = "x-pizzashop-header"
)

// statusResponse is one status an operation may answer besides 200, as a
// reusable response in components.responses.
type statusResponse struct {
	name        string
	description string
	headers     map[string]any
	noBody      bool
}

// statusResponses are the statuses the gateway answers, with what each means
// for a client. The bodies are google.rpc.Status, as the gateway writes them
// (gateway/internal/edge/errors.go).
var statusResponses = map[int]statusResponse{
	304: {name: "NotModified", noBody: true,
		description: "Not Modified: nothing changed since the ETag sent in If-None-Match. No body; keep using the copy you have."},
	400: {name: "BadRequest",
		description: "Bad input: a malformed body, parameter, Idempotency-Key or X-Request-Id header, a value that breaks a rule (the message names the field), an item that is sold out, or a card number anywhere in the request."},
	401: {name: "Unauthorized",
		description: "No credential, or one that is expired, malformed or not the shop's (for sign-in: the email and password do not match). Send `Authorization: Bearer <token>`.",
		headers: map[string]any{"WWW-Authenticate": map[string]any{
			"description": `Always ` + "`" + `Bearer realm="pizzashop"` + "`.",
			"schema":      map[string]any{"type": "string"},
		}}},
	403: {name: "Forbidden",
		description: "The credential is valid but its role may not call this operation."},
	404: {name: "NotFound",
		description: "No such resource, or one the caller may not see: another customer's order answers 404 too."},
	409: {name: "Conflict",
		description: "The resource moved on and the change is no longer possible (the kitchen started baking, the ticket or delivery is past that step), or the item already exists. Read the resource again before retrying."},
	408: {name: "RequestTimeout",
		description: "The body did not arrive within the gateway's body timeout (BODY_TIMEOUT, 10 seconds by default); the connection is closed."},
	413: {name: "PayloadTooLarge",
		description: "The request body is larger than the gateway accepts: by default 64 KiB with a valid credential, 4 KiB without one."},
	422: {name: "IdempotencyKeyReused",
		description: "This Idempotency-Key was already used with a different body. Use a new key for a new request."},
	429: {name: "TooManyRequests",
		description: "Too many at once: failed sign-in attempts for this email or from this client, or live streams open for this caller or on the server. Wait, or close a stream, before trying again."},
	503: {name: "ServiceUnavailable",
		description: "A service or the store is briefly unavailable; nothing was changed. Retry after the delay in Retry-After.",
		headers: map[string]any{"Retry-After": map[string]any{
			"description": "Seconds to wait before retrying.",
			"schema":      map[string]any{"type": "integer"},
		}}},
}

// gatewayStatuses are answered by the gateway itself, before a request
// reaches a service (gateway/internal/edge): 400 for a malformed
// Idempotency-Key or X-Request-Id header on any request, 503 when an
// upstream is down, and for a request with a body, 400 for malformed JSON,
// 413 for a body over the limit and 408 for one that arrives too slowly.
func gatewayStatuses(hasBody bool) []int {
	if hasBody {
		return []int{400, 408, 413, 503}
	}
	return []int{400, 503}
}

// requestHeaders are the request headers an operation may name in
// x-pizzashop-header.
var requestHeaders = map[string]map[string]any{
	"Idempotency-Key": {
		"description": "Makes retries safe: the same key and body return the original order, even while the first request is still in flight (a key stays bound to its order for as long as the order is kept); another body answers 422. At most 200 printable characters.",
		"schema":      map[string]any{"type": "string", "maxLength": 200},
	},
	"If-None-Match": {
		"description": "The ETag of the copy you hold; while it is current the answer is 304 with no body.",
		"schema":      map[string]any{"type": "string"},
	},
}

// openAPIDoc fixes the order of the document's top-level keys.
type openAPIDoc struct {
	OpenAPI    string         `json:"openapi"`
	Info       any            `json:"info"`
	Servers    []any          `json:"servers"`
	Tags       []any          `json:"tags"`
	Security   any            `json:"security"`
	Paths      map[string]any `json:"paths"`
	Components map[string]any `json:"components"`
}

// buildOpenAPI merges the per-file documents under dir into one and
// completes every operation.
func buildOpenAPI(dir string, files *protoregistry.Files) (*openAPIDoc, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".openapi.json") {
			names = append(names, path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no *.openapi.json under %s: run buf generate first", dir)
	}
	slices.Sort(names)

	doc := &openAPIDoc{
		OpenAPI: "3.1.0",
		Servers: []any{map[string]any{
			"url":         "{origin}",
			"description": "The gateway that serves this document at /openapi.json.",
			"variables": map[string]any{"origin": map[string]any{
				"default":     "http://localhost:8080",
				"description": "Scheme, host and port of the gateway; the default is the shop on this machine (make run).",
			}},
		}},
		Paths:      map[string]any{},
		Components: map[string]any{},
	}
	schemas := map[string]any{}
	securitySchemes := map[string]any{}
	for _, name := range names {
		var part map[string]any
		raw, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &part); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if v, ok := part["openapi"]; ok && v != doc.OpenAPI {
			return nil, fmt.Errorf("%s: openapi %v, want %s", name, v, doc.OpenAPI)
		}
		// The one file with document-wide security carries the document's
		// info and scheme (the openapiv3_document annotation in menu.proto).
		if sec, ok := part["security"]; ok {
			if doc.Security != nil {
				return nil, fmt.Errorf("%s: a second file declares document security; keep it in one openapiv3_document annotation", name)
			}
			doc.Security, doc.Info = sec, part["info"]
		}
		comps, _ := part["components"].(map[string]any)
		if err := mergeInto(schemas, comps["schemas"], name+": components.schemas"); err != nil {
			return nil, err
		}
		if err := mergeInto(securitySchemes, comps["securitySchemes"], name+": components.securitySchemes"); err != nil {
			return nil, err
		}
		if err := mergeInto(doc.Paths, part["paths"], name+": paths"); err != nil {
			return nil, err
		}
		tags, _ := part["tags"].([]any)
		doc.Tags = append(doc.Tags, tags...)
	}
	for _, t := range doc.Tags {
		if m, ok := t.(map[string]any); ok {
			if d, ok := m["description"].(string); ok {
				m["description"] = unwrap(d)
			}
		}
	}
	slices.SortStableFunc(doc.Tags, func(a, b any) int { return tagRank(a) - tagRank(b) })
	if doc.Security == nil {
		return nil, errors.New("no file declares document security (the openapiv3_document annotation)")
	}
	schemas["google.rpc.Status"] = statusSchema()
	doc.Components["schemas"] = schemas
	doc.Components["securitySchemes"] = securitySchemes

	used := map[int]bool{}
	var problems []error
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		item := doc.Paths[path].(map[string]any)
		for _, method := range slices.Sorted(maps.Keys(item)) {
			op, ok := item[method].(map[string]any)
			if !ok {
				continue
			}
			if err := completeOperation(op, files, used); err != nil {
				problems = append(problems, fmt.Errorf("%s %s: %w", strings.ToUpper(method), path, err))
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	responses := map[string]any{}
	for code := range used {
		r := statusResponses[code]
		resp := map[string]any{"description": r.description}
		if !r.noBody {
			resp["content"] = jsonContent(ref("google.rpc.Status"))
		}
		if r.headers != nil {
			resp["headers"] = r.headers
		}
		responses[r.name] = resp
	}
	doc.Components["responses"] = responses
	return doc, nil
}

// completeOperation turns the protos' extensions into responses and
// parameters, and checks that the statuses listed fit the operation.
func completeOperation(op map[string]any, files *protoregistry.Files, used map[int]bool) error {
	id, _ := op["operationId"].(string)
	md, err := methodOf(files, id)
	if err != nil {
		return err
	}
	splitSummary(op)

	listed, _ := op[extResponses].(string)
	delete(op, extResponses)
	if listed == "" {
		return fmt.Errorf("%s: no %s extension: list the statuses it answers in its openapiv3_operation annotation", id, extResponses)
	}
	codes := map[int]bool{}
	for f := range strings.FieldsSeq(listed) {
		code, err := strconv.Atoi(f)
		if _, known := statusResponses[code]; err != nil || !known {
			return fmt.Errorf("%s: %s lists %q, want one of %v", id, extResponses, f, slices.Sorted(maps.Keys(statusResponses)))
		}
		codes[code] = true
	}
	public := isPublic(op)
	_, hasBody := op["requestBody"]
	if !public && !codes[401] {
		return fmt.Errorf("%s: %s must list 401: it needs a credential", id, extResponses)
	}
	for _, code := range gatewayStatuses(hasBody) {
		codes[code] = true
	}

	responses := op["responses"].(map[string]any)
	delete(responses, "default") // every status is listed instead
	ok, _ := responses["200"].(map[string]any)
	if ok == nil {
		return fmt.Errorf("%s: no 200 response", id)
	}
	describeBody(ok, md)
	if md.IsStreamingServer() {
		streamResponse(ok)
	}
	if codes[304] {
		ok["headers"] = map[string]any{"ETag": map[string]any{
			"description": "Send it back in If-None-Match to get 304 while nothing changed.",
			"schema":      map[string]any{"type": "string"},
		}}
	}
	for code := range codes {
		used[code] = true
		responses[strconv.Itoa(code)] = map[string]any{"$ref": "#/components/responses/" + statusResponses[code].name}
	}

	if h, ok := op[extHeader].(string); ok {
		delete(op, extHeader)
		p, known := requestHeaders[h]
		if !known {
			return fmt.Errorf("%s: %s names %q, want one of %v", id, extHeader, h, slices.Sorted(maps.Keys(requestHeaders)))
		}
		param := map[string]any{"name": h, "in": "header"}
		maps.Copy(param, p)
		params, _ := op["parameters"].([]any)
		op["parameters"] = append(params, param)
	}
	for k := range op {
		if strings.HasPrefix(k, "x-pizzashop-") {
			return fmt.Errorf("%s: unknown extension %s", id, k)
		}
	}
	return nil
}

// tagOrder lists the services in the order a reader meets them: the menu,
// signing up, ordering, then the staff.
var tagOrder = []string{"MenuService", "CustomerService", "OrderService", "KitchenService", "DeliveryService"}

func tagRank(t any) int {
	name, _ := t.(map[string]any)["name"].(string)
	if i := slices.Index(tagOrder, name); i >= 0 {
		return i
	}
	return len(tagOrder)
}

// describeBody describes a 200 answer that is one field of the RPC's
// response (response_body in the HTTP rule) by that field's comment, since
// that field is what the server sends.
func describeBody(ok map[string]any, md protoreflect.MethodDescriptor) {
	content, _ := ok["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	schema, _ := media["schema"].(map[string]any)
	target, _ := schema["$ref"].(string)
	name, found := strings.CutPrefix(target, "#/components/schemas/")
	if !found || name == string(md.Output().FullName()) {
		return
	}
	fields := md.Output().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() != nil && string(fd.Message().FullName()) == name {
			if d := comment(fd); d != "" {
				ok["description"] = d
			}
			return
		}
	}
}

// methodOf finds the RPC behind an operation id "Service_Method".
func methodOf(files *protoregistry.Files, operationID string) (protoreflect.MethodDescriptor, error) {
	svc, name, ok := strings.Cut(operationID, "_")
	if !ok {
		return nil, fmt.Errorf("operation id %q is not Service_Method", operationID)
	}
	var found protoreflect.MethodDescriptor
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if s := f.Services().ByName(protoreflect.Name(svc)); s != nil {
			found = s.Methods().ByName(protoreflect.Name(name))
		}
		return found == nil
	})
	if found == nil {
		return nil, fmt.Errorf("operation %s: no such RPC in the protos", operationID)
	}
	return found, nil
}

// isPublic reports whether the operation says it needs no credential: an
// empty security requirement.
func isPublic(op map[string]any) bool {
	sec, ok := op["security"].([]any)
	if !ok {
		return false
	}
	for _, r := range sec {
		if m, ok := r.(map[string]any); ok && len(m) == 0 {
			return true
		}
	}
	return false
}

// splitSummary keeps the first sentence of the RPC's comment as the summary
// and the whole comment, unwrapped, as the description.
func splitSummary(op map[string]any) {
	text, _ := op["summary"].(string)
	if text == "" {
		return
	}
	text = unwrap(text)
	op["summary"] = firstSentence(text)
	if text != op["summary"] {
		op["description"] = text
	}
}

// streamResponse describes a live stream as grpc-gateway sends it: one JSON
// object per line, {"result": message} for each message and {"error":
// status} once if the stream fails after it started.
func streamResponse(ok map[string]any) {
	content := ok["content"].(map[string]any)
	msg := content["application/json"].(map[string]any)["schema"]
	ok["description"] = "A live stream of newline-delimited JSON objects: " + unwrap(fmt.Sprint(ok["description"]))
	ok["content"] = map[string]any{"application/x-ndjson": map[string]any{"schema": map[string]any{
		"type": "object",
		"properties": map[string]any{
			"result": msg,
			"error":  ref("google.rpc.Status"),
		},
		"description": `One line: {"result": ...} for each message, or {"error": ...} once if the stream fails after it started.`,
	}}}
}

// statusSchema is google.rpc.Status as the gateway writes it: details hold
// google.rpc.ErrorInfo (the shop's reason), BadRequest and the like.
func statusSchema() map[string]any {
	return map[string]any{
		"type":        "object",
		"description": "An error: the gRPC code, a message for people (naming the offending field where there is one) and typed details.",
		"properties": map[string]any{
			"code": map[string]any{"type": "integer", "format": "int32",
				"description": "The gRPC status code (google.rpc.Code), for example 3 for INVALID_ARGUMENT."},
			"message": map[string]any{"type": "string", "description": "What went wrong, in English."},
			"details": map[string]any{"type": "array", "description": "Typed details, each with its @type; google.rpc.ErrorInfo carries the shop's reason, such as ORDER_NOT_CANCELLABLE.",
				"items": map[string]any{
					"type":                 "object",
					"properties":           map[string]any{"@type": map[string]any{"type": "string"}},
					"additionalProperties": true,
				}},
		},
		"required": []any{"code", "message"},
	}
}

func ref(schema string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + schema}
}

func jsonContent(schema any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

// mergeInto adds the entries of src (a JSON object) to dst; an entry both
// have must be the same.
func mergeInto(dst map[string]any, src any, what string) error {
	m, _ := src.(map[string]any)
	for k, v := range m {
		if old, ok := dst[k]; ok && !reflect.DeepEqual(old, v) {
			return fmt.Errorf("%s: %q defined twice, differently", what, k)
		}
		dst[k] = v
	}
	return nil
}

// unwrap joins a proto comment's lines into one paragraph per blank-line
// separated block.
func unwrap(s string) string {
	var paras []string
	for p := range strings.SplitSeq(strings.TrimSpace(s), "\n\n") {
		paras = append(paras, strings.Join(strings.Fields(p), " "))
	}
	return strings.Join(paras, "\n\n")
}

// firstSentence returns s up to and including its first full stop followed
// by a space, or all of s.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
