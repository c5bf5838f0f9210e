package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// These tests read the services' Go sources (they cannot import the
// services' internal packages) and check that the API documents say what
// the code does: every stream and durable consumer is in the event
// catalogue, and every REST operation's credential and 401/403 answers
// follow the service's access policy.

const repoRoot = "../.."

// goSources parses every non-test Go file under the given directories of
// the repository.
func goSources(t *testing.T, dirs ...string) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// literals returns the fields of every composite literal of a type named
// typeName (any package), as field name -> Go expression.
func literals(files []*ast.File, typeName string) []map[string]ast.Expr {
	var out []map[string]ast.Expr
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok || typeNameOf(lit.Type) != typeName {
				return true
			}
			fields := map[string]ast.Expr{}
			for _, e := range lit.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok {
					if id, ok := kv.Key.(*ast.Ident); ok {
						fields[id.Name] = kv.Value
					}
				}
			}
			out = append(out, fields)
			return true
		})
	}
	return out
}

func typeNameOf(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

// stringsOf returns the string literals of e: one, or a []string{...}.
func stringsOf(e ast.Expr) []string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if s, err := strconv.Unquote(e.Value); err == nil {
			return []string{s}
		}
	case *ast.CompositeLit:
		var out []string
		for _, el := range e.Elts {
			out = append(out, stringsOf(el)...)
		}
		return out
	}
	return nil
}

func TestCatalogMatchesServices(t *testing.T) {
	files := goSources(t, "services", "pkg/natsx")

	var declared []string
	for _, st := range literals(files, "StreamConfig") {
		name, subjects := stringsOf(st["Name"]), stringsOf(st["Subjects"])
		if len(name) != 1 {
			continue // a stream built at run time (tests, tools): not the shop's
		}
		declared = append(declared, name[0]+" "+strings.Join(subjects, ","))
	}
	var documented []string
	for _, st := range shopCatalog.Streams {
		documented = append(documented, st.Name+" "+st.Subjects)
	}
	slices.Sort(declared)
	slices.Sort(documented)
	if !slices.Equal(declared, documented) {
		t.Errorf("streams the services declare = %q\nstreams the catalogue documents = %q\nUpdate tools/apidocs/catalog.go and run make generate.", declared, documented)
	}

	declared, documented = nil, nil
	for _, c := range literals(files, "ConsumerConfig") {
		durable := stringsOf(c["Durable"])
		if len(durable) != 1 {
			continue
		}
		declared = append(declared, strings.Join([]string{durable[0], strings.Join(stringsOf(c["Stream"]), ""), strings.Join(stringsOf(c["FilterSubjects"]), ",")}, " "))
	}
	for _, c := range shopCatalog.Consumers {
		documented = append(documented, c.Durable+" "+c.Stream+" "+c.Filter)
	}
	slices.Sort(declared)
	slices.Sort(documented)
	if len(declared) == 0 {
		t.Fatal("found no natsx.ConsumerConfig literal in services/: has the consumer declaration changed shape? Update this test with it")
	}
	if !slices.Equal(declared, documented) {
		t.Errorf("durable consumers the services declare = %q\nconsumers the catalogue documents = %q\nUpdate tools/apidocs/catalog.go and run make generate.", declared, documented)
	}
}

func TestOperationsFollowAccessPolicies(t *testing.T) {
	files := goSources(t, "services")
	// "MenuService_GetMenu" -> "Anyone", "Authenticated" or "Only".
	rules := map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok || typeNameOf(lit.Type) != "Policy" {
				return true
			}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, ok := kv.Key.(*ast.SelectorExpr)
				if !ok {
					continue
				}
				method := strings.TrimSuffix(key.Sel.Name, "_FullMethodName")
				switch v := kv.Value.(type) {
				case *ast.SelectorExpr:
					rules[method] = v.Sel.Name
				case *ast.CallExpr:
					rules[method] = typeNameOf(v.Fun)
				}
			}
			return true
		})
	}
	if len(rules) == 0 {
		t.Fatal("found no auth.Policy literal in services/")
	}

	raw, err := os.ReadFile(filepath.Join(repoRoot, "gateway/openapi", OpenAPIFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string           `json:"operationId"`
			Security    []map[string]any `json:"security"`
			Responses   map[string]any   `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			name := strings.ToUpper(method) + " " + path + " (" + op.OperationID + ")"
			rule, ok := rules[op.OperationID]
			if !ok {
				t.Errorf("%s: no access rule in any service's Policy", name)
				continue
			}
			seen++
			public := len(op.Security) == 1 && len(op.Security[0]) == 0
			_, has401 := op.Responses["401"]
			_, has403 := op.Responses["403"]
			switch rule {
			case "Anyone":
				if !public {
					t.Errorf("%s: the service lets anyone call it, but the document asks for a credential (security %v); add security: {} to its openapiv3_operation", name, op.Security)
				}
				if has403 {
					t.Errorf("%s: public, but the document lists 403", name)
				}
			case "Authenticated", "Only":
				if public || !has401 {
					t.Errorf("%s: needs a credential, but the document says public = %v, lists 401 = %v", name, public, has401)
				}
				if want := rule == "Only"; has403 != want {
					t.Errorf("%s: access rule %s, but the document lists 403 = %v, want %v", name, rule, has403, want)
				}
			default:
				t.Errorf("%s: unknown access rule %s; teach this test about it", name, rule)
			}
		}
	}
	if seen < 20 {
		t.Errorf("checked %d operations against their access rules, want every REST operation (20 or more)", seen)
	}
}
