package main

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// echoFiles is a registry with one service: EchoService.Echo (unary) and
// EchoService.Follow (server streaming), both Msg -> Msg.
func echoFiles(t *testing.T) *protoregistry.Files {
	t.Helper()
	fd := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("echo.proto"),
		Package:     proto.String("echo.v1"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Msg")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("EchoService"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Echo"), InputType: proto.String(".echo.v1.Msg"), OutputType: proto.String(".echo.v1.Msg")},
				{Name: proto.String("Follow"), InputType: proto.String(".echo.v1.Msg"), OutputType: proto.String(".echo.v1.Msg"), ServerStreaming: proto.Bool(true)},
			},
		}},
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{fd}})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// operation is what protoc-gen-openapiv3 writes for an operation, with the
// shop's extensions.
func operation(id, statuses string, public, body bool) map[string]any {
	op := map[string]any{
		"operationId": id,
		"summary":     "Echo says it back. It\nwaits for nothing.",
		"responses": map[string]any{
			"default": map[string]any{"description": "An unexpected error response."},
			"200": map[string]any{"description": "Msg.", "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/echo.v1.Msg"}},
			}},
		},
	}
	if statuses != "" {
		op[extResponses] = statuses
	}
	if public {
		op["security"] = []any{map[string]any{}}
	}
	if body {
		op["requestBody"] = map[string]any{}
	}
	return op
}

func TestCompleteOperationRefusesWrongStatusLists(t *testing.T) {
	files := echoFiles(t)
	tests := []struct {
		name     string
		op       map[string]any
		wantErr  string // "" for success
		wantCode []string
	}{
		{"secured with body", operation("EchoService_Echo", "401 403 409", false, true), "", []string{"200", "400", "401", "403", "408", "409", "413", "503"}},
		{"public without body", operation("EchoService_Echo", "404", true, false), "", []string{"200", "400", "404", "503"}},
		{"gateway statuses listed too", operation("EchoService_Echo", "400 413 503", true, true), "", []string{"200", "400", "408", "413", "503"}},
		{"no list", operation("EchoService_Echo", "", true, false), "no x-pizzashop-responses", nil},
		{"unknown status", operation("EchoService_Echo", "418 503", true, false), `lists "418"`, nil},
		{"not a number", operation("EchoService_Echo", "4xx 503", true, false), `lists "4xx"`, nil},
		{"secured without 401", operation("EchoService_Echo", "403 503", false, false), "must list 401", nil},
		{"no such rpc", operation("EchoService_Shout", "503", true, false), "no such RPC", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[int]bool{}
			err := completeOperation(tt.op, files, used)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("completeOperation = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("completeOperation = %v, want nil", err)
			}
			var got []string
			for code := range tt.op["responses"].(map[string]any) {
				got = append(got, code)
			}
			if strings.Join(sorted(got), " ") != strings.Join(tt.wantCode, " ") {
				t.Errorf("responses = %v, want %v (and no default)", sorted(got), tt.wantCode)
			}
			if _, left := tt.op[extResponses]; left {
				t.Errorf("%s is still on the operation", extResponses)
			}
			if tt.op["summary"] != "Echo says it back." || tt.op["description"] != "Echo says it back. It waits for nothing." {
				t.Errorf("summary, description = %q, %q; want the first sentence and the whole comment", tt.op["summary"], tt.op["description"])
			}
		})
	}
}

func TestCompleteOperationStreamsAndHeaders(t *testing.T) {
	files := echoFiles(t)
	op := operation("EchoService_Follow", "304 401 503", false, false)
	op[extHeader] = "If-None-Match"
	if err := completeOperation(op, files, map[int]bool{}); err != nil {
		t.Fatal(err)
	}
	ok := op["responses"].(map[string]any)["200"].(map[string]any)
	content := ok["content"].(map[string]any)
	if _, nd := content["application/x-ndjson"]; !nd || len(content) != 1 {
		t.Errorf("streaming 200 content = %v, want only application/x-ndjson", content)
	}
	if _, etag := ok["headers"].(map[string]any)["ETag"]; !etag {
		t.Errorf("200 of an operation answering 304 has headers %v, want an ETag", ok["headers"])
	}
	params, _ := op["parameters"].([]any)
	if len(params) != 1 || params[0].(map[string]any)["name"] != "If-None-Match" || params[0].(map[string]any)["in"] != "header" {
		t.Errorf("parameters = %v, want the If-None-Match header", params)
	}

	op = operation("EchoService_Echo", "503", true, false)
	op[extHeader] = "X-Whatever"
	if err := completeOperation(op, files, map[int]bool{}); err == nil || !strings.Contains(err.Error(), "X-Whatever") {
		t.Errorf("unknown header: completeOperation = %v, want an error naming it", err)
	}
}

func TestStatusWords(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"OrderStatus", "ORDER_STATUS"},
		{"TicketStatus", "TICKET_STATUS"},
		{"Size", "SIZE"},
	} {
		if got := upperSnake(tt.in); got != tt.want {
			t.Errorf("upperSnake(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := camel("kitchen-placed-orders"); got != "KitchenPlacedOrders" {
		t.Errorf("camel(kitchen-placed-orders) = %q, want KitchenPlacedOrders", got)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }
