package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
)

// Safe by default: no deploy file may run the services with the public
// development key, or let them accept a placeholder, unless the operator
// declares a local demo at start (PIZZASHOP_DEMO=true, read by pkg/config).
// One image name per binary everywhere, and one NATS version: the one the
// embedded server of `make run` and the tests is built from.

// demoEnv is pkg/config.DemoEnv.
const demoEnv = "PIZZASHOP_DEMO"

// placeholderWords are those pkg/config refuses a secret for.
var placeholderWords = []string{"replace-me", "replace_me", "replaceme", "changeme", "change-me", "change_me", "placeholder", "not-a-secret", "do-not-use"}

// truth is what the deploy files must agree with, read from the Go sources.
type truth struct {
	devSecret   string // pkg/auth.DevSecret
	natsVersion string // nats-server/v2 in pkg/go.mod, without the v: "2.15.2"
}

// readTruth reads the development key and the embedded NATS version from
// the repository at root.
func readTruth(r *report, root string) truth {
	var t truth
	tokenGo := filepath.Join(root, "pkg", "auth", "token.go")
	if v, err := goStringConst(tokenGo, "DevSecret"); err != nil {
		r.failf(tokenGo, "cannot read the development key: %v", err)
	} else {
		t.devSecret = v
	}
	goMod := filepath.Join(root, "pkg", "go.mod")
	data, err := os.ReadFile(goMod)
	if err == nil {
		var f *modfile.File
		if f, err = modfile.ParseLax(goMod, data, nil); err == nil {
			for _, req := range f.Require {
				if req.Mod.Path == "github.com/nats-io/nats-server/v2" {
					t.natsVersion = strings.TrimPrefix(req.Mod.Version, "v")
				}
			}
		}
	}
	if err != nil {
		r.failf(goMod, "%v", err)
	} else if t.natsVersion == "" {
		r.failf(goMod, "no requirement of github.com/nats-io/nats-server/v2: cannot tell the NATS version")
	}
	return t
}

// goStringConst returns the value of the string constant name in file.
func goStringConst(file, name string) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		return "", err
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != name || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					return strconv.Unquote(lit.Value)
				}
			}
		}
	}
	return "", os.ErrNotExist
}

// unsafeSecret names what is wrong with a signing key a deploy file sets by
// default, or returns "".
func (t truth) unsafeSecret(v string) string {
	switch {
	case v == "" || v == fromRef:
		return ""
	case t.devSecret != "" && v == t.devSecret:
		return "is the public development key"
	}
	low := strings.ToLower(v)
	for _, w := range placeholderWords {
		if strings.Contains(low, w) {
			return "is a placeholder"
		}
	}
	return ""
}

// demoOn reports whether a value of PIZZASHOP_DEMO declares a demo.
func demoOn(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// checkSecretDefaults checks one binary's environment as a deploy file
// sets it when the operator sets nothing.
func (t truth) checkSecretDefaults(r *report, path, where string, env map[string]string) {
	if v, ok := env["AUTH_SECRET"]; ok {
		if why := t.unsafeSecret(v); why != "" {
			r.failf(path, "%s: AUTH_SECRET %s by default; leave it to the operator (the services refuse to start without one outside a demo)", where, why)
		}
	}
	if v := env[demoEnv]; demoOn(v) {
		r.failf(path, "%s: %s=%s by default; a demo must be asked for at start, never be the default", where, demoEnv, v)
	}
}

// imageFor checks that image names the binary as every deploy file does:
// [registry/]pizzashop/<binary>[:tag|@digest].
func imageFor(image, binary string) bool {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo == "pizzashop/"+binary || strings.HasSuffix(repo, "/pizzashop/"+binary)
}

// natsImageVersion returns the version in a nats image tag such as
// "nats:2.15.2-alpine" ("2.15.2"), or "" when it is not a nats image.
func natsImageVersion(image string) (repo, version string) {
	repo, tag, _ := strings.Cut(image, ":")
	if i := strings.Index(tag, "@"); i >= 0 {
		tag = tag[:i]
	}
	version, _, _ = strings.Cut(tag, "-")
	return repo, version
}

// checkNATSImage checks that a NATS image runs the version embedded in the
// binaries, to the patch release.
func (t truth) checkNATSImage(r *report, path, where, image string) {
	if t.natsVersion == "" {
		return
	}
	repo, version := natsImageVersion(image)
	if repo != "nats" && !strings.HasSuffix(repo, "/nats") {
		r.failf(path, "%s: image %q is not a nats image", where, image)
		return
	}
	if version != t.natsVersion {
		r.failf(path, "%s: image %q runs NATS %q, but the embedded server (pkg/go.mod) is %s: use nats:%s-alpine",
			where, image, version, t.natsVersion, t.natsVersion)
	}
}
