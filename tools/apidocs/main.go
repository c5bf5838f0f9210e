// Command apidocs writes the shop's two API documents from the protos:
//
//   - the OpenAPI 3.1 document of the REST API, by merging the per-file
//     documents of protoc-gen-openapiv3 and completing what the plugin cannot
//     express (every error status an operation answers, request headers,
//     live streams as newline-delimited JSON);
//   - the AsyncAPI 3 event catalogue: every JetStream stream, subject,
//     message (payload schema from the event protos), header and consumer.
//
// `make generate` runs it after `buf generate`, with the descriptor set of
// proto/ (comments included) from `buf build`:
//
//	apidocs -protos protos.binpb -openapi DIR -out gateway/openapi
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The documents' file names in the output directory.
const (
	OpenAPIFile  = "pizzashop.openapi.json"
	AsyncAPIFile = "pizzashop.asyncapi.json"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "apidocs: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("apidocs", flag.ContinueOnError)
	protos := fs.String("protos", "", "descriptor set of proto/ with source info (buf build --as-file-descriptor-set)")
	openapiDir := fs.String("openapi", "", "directory holding protoc-gen-openapiv3's *.openapi.json files")
	out := fs.String("out", "", "directory to write "+OpenAPIFile+" and "+AsyncAPIFile+" to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *protos == "" || *openapiDir == "" || *out == "" {
		return errors.New("-protos, -openapi and -out are all required")
	}
	files, err := loadDescriptors(*protos)
	if err != nil {
		return err
	}
	oa, err := buildOpenAPI(*openapiDir, files)
	if err != nil {
		return fmt.Errorf("openapi: %w", err)
	}
	aa, err := buildAsyncAPI(files, shopCatalog)
	if err != nil {
		return fmt.Errorf("asyncapi: %w", err)
	}
	for name, doc := range map[string]any{OpenAPIFile: oa, AsyncAPIFile: aa} {
		if err := writeJSON(filepath.Join(*out, name), doc); err != nil {
			return err
		}
	}
	return nil
}

// loadDescriptors reads a FileDescriptorSet into a registry that keeps the
// source comments.
func loadDescriptors(path string) (*protoregistry.Files, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%s: not a descriptor set: %w", path, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return files, nil
}

// encodeJSON is the documents' one encoding: two-space indents, no HTML
// escaping (descriptions say "<token>"), a final newline. Maps come out with
// sorted keys, so the output is byte-stable.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(path string, v any) error {
	b, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return os.WriteFile(path, b, 0o644)
}
