// Command check validates the Pizzashop deployment files offline, with no
// Docker engine and no Kubernetes cluster:
//
//   - docker-compose.yml is loaded for real with compose-go (schema,
//     interpolation, consistency), then checked against the runtime contract
//     of the Go binaries (services present, env vars, ports, health gating)
//     and against its companion files under deploy/compose/.
//   - every YAML document in deploy/k8s/*.yaml is decoded strictly with
//     client-go (unknown fields, wrong types, unknown kinds are errors); the
//     kustomization must list existing files, every manifest must be listed,
//     and the kustomize build output is decoded strictly and checked too.
//   - deploy/docker/service.Dockerfile is parsed and linted with BuildKit's
//     Dockerfile frontend, and .dockerignore is checked against go.work.
//
// Usage (from deploy/check; this module is outside go.work):
//
//	GOWORK=off go run . [repo-root]   # repo-root defaults to ../..
//
// It prints one line per file checked and exits 1 with the list of problems
// if anything is wrong.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	root := "../.."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: check [repo-root]")
		os.Exit(2)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy check: %v\n", err)
		os.Exit(2)
	}
	if _, err := os.Stat(filepath.Join(abs, "go.work")); err != nil {
		fmt.Fprintf(os.Stderr, "deploy check: %s does not look like the repo root (no go.work): %v\n", abs, err)
		os.Exit(2)
	}

	r := newReport(os.Stdout, abs)
	checkAll(context.Background(), r, abs)

	if len(r.problems) > 0 {
		fmt.Fprintf(os.Stderr, "\ndeploy check FAILED: %d problem(s):\n", len(r.problems))
		for _, p := range r.problems {
			fmt.Fprintf(os.Stderr, "  - %s\n", p)
		}
		os.Exit(1)
	}
	fmt.Fprintf(os.Stdout, "deploy check passed: %d file(s) checked\n", r.files)
}

// checkAll runs every check against the repository at root.
func checkAll(ctx context.Context, r *report, root string) {
	r.truth = readTruth(r, root)
	if project := checkCompose(ctx, r, filepath.Join(root, "docker-compose.yml")); project != nil {
		checkComposeCompanions(r, root, project)
	}
	checkK8sDir(r, filepath.Join(root, "deploy", "k8s"))
	checkDockerfile(r, filepath.Join(root, "deploy", "docker", "service.Dockerfile"))
	checkDockerignore(r, root)
}

// report collects results: one printed line per file, and the problems.
type report struct {
	out      io.Writer
	root     string
	files    int
	problems []string
	truth    truth // what the deploy files must agree with
}

func newReport(out io.Writer, root string) *report {
	return &report{out: out, root: root}
}

func (r *report) rel(path string) string {
	if r.root == "" {
		return path
	}
	if rel, err := filepath.Rel(r.root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return path
}

// file prints the result line of one checked file: "ok" when no problem was
// recorded for it since start, else "FAIL" with the count.
func (r *report) file(path string, start int, detail string) {
	r.files++
	n := len(r.problems) - start
	if n == 0 {
		if detail != "" {
			fmt.Fprintf(r.out, "ok    %s (%s)\n", r.rel(path), detail)
		} else {
			fmt.Fprintf(r.out, "ok    %s\n", r.rel(path))
		}
		return
	}
	fmt.Fprintf(r.out, "FAIL  %s: %d problem(s)\n", r.rel(path), n)
	for _, p := range r.problems[start:] {
		fmt.Fprintf(r.out, "        %s\n", p)
	}
}

func (r *report) failf(path, format string, args ...any) {
	msg := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ") // one line
	r.problems = append(r.problems, r.rel(path)+": "+msg)
}

func (r *report) note(path, format string, args ...any) {
	fmt.Fprintf(r.out, "note  %s: %s\n", r.rel(path), fmt.Sprintf(format, args...))
}
