package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/mod/modfile"
)

const finalBaseImage = "gcr.io/distroless/static-debian12:nonroot"

// checkDockerfile parses the Dockerfile with BuildKit's own parser and
// instruction decoder (the lint rules BuildKit applies while parsing are
// errors here), then checks the shape the deploy files rely on.
func checkDockerfile(r *report, path string) {
	start := len(r.problems)
	data, err := os.ReadFile(path)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		r.failf(path, "parse: %v", err)
		r.file(path, start, "")
		return
	}
	for _, w := range res.Warnings {
		r.failf(path, "line %d: %s", w.Location.Start.Line, w.Short)
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, _, _, msg string, loc []parser.Range) {
			line := 0
			if len(loc) > 0 {
				line = loc[0].Start.Line
			}
			r.failf(path, "line %d: lint %s: %s", line, rule, msg)
		},
	})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return
	}
	if len(stages) < 2 {
		r.failf(path, "want a multi-stage build (build + runtime), got %d stage(s)", len(stages))
		r.file(path, start, "")
		return
	}
	_ = metaArgs

	final := stages[len(stages)-1]
	if final.BaseName != finalBaseImage {
		r.failf(path, "final stage must be FROM %s, got %s", finalBaseImage, final.BaseName)
	}
	var user string
	var entrypoint []string
	serviceArg := false
	for i, st := range stages {
		for _, cmd := range st.Commands {
			switch c := cmd.(type) {
			case *instructions.HealthCheckCommand:
				r.failf(path, "stage %d has a HEALTHCHECK; the distroless image cannot run one (probes live in compose/k8s)", i)
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					if a.Key == "SERVICE" {
						serviceArg = true
					}
				}
			case *instructions.UserCommand:
				if i == len(stages)-1 {
					user = c.User
				}
			case *instructions.EntrypointCommand:
				if i == len(stages)-1 {
					entrypoint = c.CmdLine
					if c.PrependShell {
						r.failf(path, "ENTRYPOINT must use the exec (JSON) form: the final image has no shell")
					}
				}
			}
		}
	}
	if !serviceArg {
		r.failf(path, "no ARG SERVICE (compose and the Makefile pass --build-arg SERVICE=<binary>)")
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "root:") || strings.HasPrefix(user, "0:") {
		r.failf(path, "final stage must set a non-root USER, got %q", user)
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/app" {
		r.failf(path, "final stage ENTRYPOINT must be [\"/app\"], got %q", entrypoint)
	}
	if !bytes.Contains(data, []byte("CGO_ENABLED=0")) || !bytes.Contains(data, []byte("-trimpath")) {
		r.failf(path, "the Go build must be static and reproducible (CGO_ENABLED=0, -trimpath)")
	}
	r.file(path, start, fmt.Sprintf("%d stages, final FROM %s", len(stages), final.BaseName))

	// Main packages the Dockerfile builds (services/<SERVICE>, gateway): only a
	// note while they are being written, the image build fails until they exist.
	root := filepath.Dir(filepath.Dir(filepath.Dir(path)))
	for _, b := range goBinaries {
		dir := filepath.Join(root, "services", b)
		if b == "gateway" {
			dir = filepath.Join(root, "gateway")
		}
		if !hasMainPackage(dir) {
			r.note(dir, "no package main yet: `docker build --build-arg SERVICE=%s` will fail until it exists", b)
		}
	}
}

// checkDockerignore makes sure the build context keeps what the Go build
// needs (go.work and every workspace module) and drops .git and local data.
func checkDockerignore(r *report, root string) {
	path := filepath.Join(root, ".dockerignore")
	start := len(r.problems)
	f, err := os.Open(path)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return
	}
	excluded := func(p string) bool {
		m, err := pm.MatchesOrParentMatches(filepath.ToSlash(p))
		if err != nil {
			r.failf(path, "%s: %v", p, err)
		}
		return m
	}

	workPath := filepath.Join(root, "go.work")
	data, err := os.ReadFile(workPath)
	if err != nil {
		r.failf(path, "reading go.work: %v", err)
		r.file(path, start, "")
		return
	}
	work, err := modfile.ParseWork(workPath, data, nil)
	if err != nil {
		r.failf(path, "parsing go.work: %v", err)
		r.file(path, start, "")
		return
	}
	keep := []string{"go.work"}
	if _, err := os.Stat(filepath.Join(root, "go.work.sum")); err == nil {
		keep = append(keep, "go.work.sum")
	}
	for _, u := range work.Use {
		dir := filepath.ToSlash(filepath.Clean(u.Path))
		keep = append(keep, dir+"/go.mod")
		// A workspace module's sources must reach the build, too.
		matches, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		for _, m := range matches {
			rel, _ := filepath.Rel(root, m)
			if !strings.HasSuffix(rel, "_test.go") {
				keep = append(keep, filepath.ToSlash(rel))
			}
		}
	}
	for _, p := range keep {
		if excluded(p) {
			r.failf(path, "excludes %s, which the image build needs (go.work workspace)", p)
		}
	}
	for _, p := range []string{".git", "data", "bin", ".bin"} {
		if !excluded(p) {
			r.failf(path, "should exclude %s from the build context", p)
		}
	}

	r.file(path, start, fmt.Sprintf("%d patterns; keeps go.work and %d workspace modules", len(patterns), len(work.Use)))
}

func hasMainPackage(dir string) bool {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, m := range matches {
		if strings.HasSuffix(m, "_test.go") {
			continue
		}
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "package main" {
				return true
			}
		}
	}
	return false
}
