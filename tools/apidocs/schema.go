package main

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// schemaSet turns proto messages into JSON Schemas of their protojson form
// (what `pizzashop events` prints and the REST API speaks): lowerCamelCase
// names, enums by name, 64-bit integers as strings, timestamps as RFC 3339.
// Messages and enums become named schemas that refer to each other.
type schemaSet struct {
	// prefix is where named schemas live, "#/components/schemas/".
	prefix  string
	schemas map[string]any
}

func newSchemaSet(prefix string) *schemaSet {
	return &schemaSet{prefix: prefix, schemas: map[string]any{}}
}

// add makes a named schema of md and everything it refers to, and returns a
// reference to it.
func (s *schemaSet) add(md protoreflect.MessageDescriptor) map[string]any {
	name := string(md.FullName())
	if _, done := s.schemas[name]; !done {
		s.schemas[name] = nil // placeholder: recursive messages stop here
		obj := map[string]any{"type": "object"}
		if d := comment(md); d != "" {
			obj["description"] = d
		}
		props := map[string]any{}
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			p := s.field(fd)
			if d := comment(fd); d != "" {
				p = withDescription(p, d)
			}
			props[fd.JSONName()] = p
		}
		obj["properties"] = props
		var oneofs []string
		for i := range md.Oneofs().Len() {
			od := md.Oneofs().Get(i)
			if od.IsSynthetic() {
				continue
			}
			var names []string
			for j := range od.Fields().Len() {
				names = append(names, od.Fields().Get(j).JSONName())
			}
			oneofs = append(oneofs, strings.Join(names, ", "))
		}
		if len(oneofs) > 0 {
			obj["description"] = strings.TrimSpace(fmt.Sprint(obj["description"], " At most one of each group is set: ", strings.Join(oneofs, "; "), "."))
		}
		s.schemas[name] = obj
	}
	return map[string]any{"$ref": s.prefix + name}
}

// field is the schema of one field's value.
func (s *schemaSet) field(fd protoreflect.FieldDescriptor) map[string]any {
	switch {
	case fd.IsMap():
		return map[string]any{"type": "object", "additionalProperties": s.single(fd.MapValue())}
	case fd.IsList():
		return map[string]any{"type": "array", "items": s.single(fd)}
	}
	return s.single(fd)
}

// single is the schema of one value of fd's type.
func (s *schemaSet) single(fd protoreflect.FieldDescriptor) map[string]any {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return map[string]any{"type": "boolean"}
	case protoreflect.StringKind:
		return map[string]any{"type": "string"}
	case protoreflect.BytesKind:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return map[string]any{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return map[string]any{"type": "integer", "minimum": 0}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return map[string]any{"type": "string", "format": "int64"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return map[string]any{"type": "string", "format": "uint64"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return map[string]any{"type": "number"}
	case protoreflect.EnumKind:
		return s.enum(fd.Enum())
	}
	md := fd.Message()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return map[string]any{"type": "string", "format": "date-time"}
	case "google.protobuf.Duration":
		return map[string]any{"type": "string", "description": `Seconds with an "s" suffix, for example "1.5s".`}
	case "google.protobuf.FieldMask":
		return map[string]any{"type": "string", "description": "Comma-separated lowerCamelCase field paths."}
	case "google.protobuf.Struct", "google.protobuf.Empty":
		return map[string]any{"type": "object"}
	case "google.protobuf.Value":
		return map[string]any{}
	}
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") && strings.HasSuffix(string(md.Name()), "Value") {
		return s.single(md.Fields().ByName("value")) // wrappers are their value
	}
	return s.add(md)
}

// enum makes a named schema of ed: its value names, each described.
func (s *schemaSet) enum(ed protoreflect.EnumDescriptor) map[string]any {
	name := string(ed.FullName())
	if _, done := s.schemas[name]; !done {
		var names []any
		var lines []string
		values := ed.Values()
		for i := range values.Len() {
			v := values.Get(i)
			names = append(names, string(v.Name()))
			if d := comment(v); d != "" {
				lines = append(lines, fmt.Sprintf("%s: %s", v.Name(), d))
			}
		}
		desc := comment(ed)
		if len(lines) > 0 {
			desc = strings.TrimSpace(desc + "\n\n" + strings.Join(lines, "\n"))
		}
		obj := map[string]any{"type": "string", "enum": names}
		if desc != "" {
			obj["description"] = desc
		}
		s.schemas[name] = obj
	}
	return map[string]any{"$ref": s.prefix + name}
}

// withDescription describes a field. A reference cannot carry siblings in
// every schema dialect, so it is wrapped.
func withDescription(p map[string]any, d string) map[string]any {
	if _, isRef := p["$ref"]; isRef {
		return map[string]any{"allOf": []any{p}, "description": d}
	}
	out := map[string]any{"description": d}
	for k, v := range p {
		if k == "description" {
			out[k] = d + " " + v.(string)
			continue
		}
		out[k] = v
	}
	return out
}

// comment is the leading comment of d in its .proto, unwrapped.
func comment(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	return unwrap(loc.LeadingComments)
}
