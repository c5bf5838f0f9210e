package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const repoRoot = "../.."

// run checks the repository at root and returns the report and its output.
func run(t *testing.T, root string) (*report, string) {
	t.Helper()
	var out bytes.Buffer
	r := newReport(&out, root)
	checkAll(context.Background(), r, root)
	return r, out.String()
}

func wantProblem(t *testing.T, r *report, out, substr string) {
	t.Helper()
	for _, p := range r.problems {
		if strings.Contains(p, substr) {
			return
		}
	}
	t.Errorf("no problem mentions %q; problems:\n  %s\noutput:\n%s", substr, strings.Join(r.problems, "\n  "), out)
}

// The real deploy files pass.
func TestRepositoryPasses(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	r, out := run(t, root)
	if len(r.problems) > 0 {
		t.Fatalf("deploy files have problems:\n  %s\noutput:\n%s", strings.Join(r.problems, "\n  "), out)
	}
	for _, f := range []string{
		"docker-compose.yml", "deploy/k8s/menu.yaml", "deploy/k8s/kustomization.yaml",
		"deploy/docker/service.Dockerfile", ".dockerignore",
	} {
		if !strings.Contains(out, "ok    "+f) {
			t.Errorf("output has no ok line for %s:\n%s", f, out)
		}
	}
}

// Broken compose snippets are rejected by the compose-go schema validation
// and reported with a FAIL line.
func TestBrokenComposeIsReported(t *testing.T) {
	for _, tc := range []struct {
		name, snippet, want string
	}{
		{"unknown key", `services:
  menu:
    image: example/menu:1
    healthchek:
      test: ["CMD", "true"]
`, "healthchek"},
		{"wrong type", `services:
  menu:
    image: example/menu:1
    ports: "8080"
`, "ports must be a array"},
		{"undefined dependency", `services:
  menu:
    image: example/menu:1
    depends_on: [mongo]
`, "mongo"},
		{"not YAML", "services:\n  menu: [\n", "compose load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "docker-compose.yml")
			if err := os.WriteFile(path, []byte(tc.snippet), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := loadCompose(context.Background(), path)
			if err == nil {
				t.Fatal("compose-go accepted a broken file")
			}
			t.Logf("compose-go: %v", err)

			var out bytes.Buffer
			r := newReport(&out, dir)
			if checkCompose(context.Background(), r, path) != nil {
				t.Fatal("checkCompose returned a project for a broken file")
			}
			wantProblem(t, r, out.String(), "compose load")
			wantProblem(t, r, out.String(), tc.want)
			if !strings.Contains(out.String(), "FAIL  docker-compose.yml") {
				t.Errorf("no FAIL line for the compose file:\n%s", out.String())
			}
		})
	}
}

// A Kubernetes document with an unknown field fails strict decoding.
func TestK8sUnknownFieldIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	doc := `apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
data:
  A: b
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: menu
spec:
  replicaz: 2
  selector:
    matchLabels: {app: menu}
  template:
    metadata:
      labels: {app: menu}
    spec:
      containers:
        - name: menu
          image: example/menu:1
---
apiVersion: v1
kind: Servise
metadata:
  name: typo-kind
`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := newReport(&out, dir)
	objs := checkK8sFile(r, path)
	if len(objs) != 1 {
		t.Errorf("want only the ConfigMap decoded, got %d objects", len(objs))
	}
	wantProblem(t, r, out.String(), `unknown field "spec.replicaz"`)
	wantProblem(t, r, out.String(), `no kind "Servise" is registered`)
	if !strings.Contains(out.String(), "FAIL  bad.yaml") {
		t.Errorf("no FAIL line for the manifest:\n%s", out.String())
	}
}

// Each mutation of the real files must be caught, proving every check bites.
func TestMutationsAreReported(t *testing.T) {
	src, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		file      string // relative to the repo root
		old, new  string // old must occur in file; "" appends new / creates file
		wantSubst string
	}{
		// compose
		{"compose missing env", "docker-compose.yml",
			"  AUTH_SECRET: ${AUTH_SECRET:-}\n", "",
			"AUTH_SECRET is required"},
		{"compose development key by default", "docker-compose.yml",
			"AUTH_SECRET: ${AUTH_SECRET:-}", "AUTH_SECRET: ${AUTH_SECRET:-pizzashop-local-dev-secret-do-not-use-in-production}",
			"AUTH_SECRET is the public development key by default"},
		{"compose placeholder by default", "docker-compose.yml",
			"AUTH_SECRET: ${AUTH_SECRET:-}", "AUTH_SECRET: ${AUTH_SECRET:-changeme-0123456789abcdef}",
			"AUTH_SECRET is a placeholder by default"},
		{"compose demo by default", "docker-compose.yml",
			"${PIZZASHOP_DEMO:-false}", "${PIZZASHOP_DEMO:-true}",
			"PIZZASHOP_DEMO=true by default"},
		{"compose demo not passed through", "docker-compose.yml",
			"  PIZZASHOP_DEMO: ${PIZZASHOP_DEMO:-false}\n", "",
			"PIZZASHOP_DEMO is not passed through"},
		{"compose image named otherwise", "docker-compose.yml",
			"image: pizzashop/order:", "image: pizzashop-order:",
			`service "order": image "pizzashop-order:dev": want pizzashop/order:<tag>`},
		{"compose NATS version", "docker-compose.yml",
			"image: nats:2.15.2-alpine", "image: nats:2.12-alpine",
			`service "nats": image "nats:2.12-alpine" runs NATS "2.12"`},
		{"embedded NATS moves on", "pkg/go.mod",
			"github.com/nats-io/nats-server/v2 v2.15.2", "github.com/nats-io/nats-server/v2 v2.16.0",
			"the embedded server (pkg/go.mod) is 2.16.0"},
		{"compose wrong addr port", "docker-compose.yml",
			"KITCHEN_ADDR: kitchen:9090", "KITCHEN_ADDR: kitchen:9091",
			"kitchen listens for gRPC on port 9090"},
		{"compose variable without default", "docker-compose.yml",
			"LOG_LEVEL: ${LOG_LEVEL:-info}", "LOG_LEVEL: ${LOG_LEVEL}",
			`"LOG_LEVEL" variable is not set`},
		{"compose extra published port", "docker-compose.yml",
			"      OTEL_SERVICE_NAME: menu\n", "      OTEL_SERVICE_NAME: menu\n    ports: [\"9090:9090\"]\n",
			`service "menu" publishes container port 9090`},
		{"compose not waiting for healthy infra", "docker-compose.yml",
			"  nats:\n    condition: service_healthy\n", "  nats:\n    condition: service_started\n",
			`must depend on "nats" with condition service_healthy`},
		{"compose unknown service reference", "docker-compose.yml",
			"NATS_URL: nats://nats:4222", "NATS_URL: nats://natz:4222",
			`NATS_URL points at host "natz"`},
		{"compose wrong database", "docker-compose.yml",
			"MONGO_DATABASE: pizzashop_kitchen", "MONGO_DATABASE: pizzashop_menu",
			`MONGO_DATABASE must be "pizzashop_kitchen"`},
		{"compose schema error", "docker-compose.yml",
			"    restart: unless-stopped\n    volumes:\n      - mongo-data", "    restart: unless-stopped\n    volumez:\n      - mongo-data",
			"volumez"},
		{"prometheus misses a service", "deploy/compose/prometheus.yml",
			`"menu:9464"`, `"menu:9465"`,
			"nothing scrapes menu:9464"},
		{"otel undefined exporter", "deploy/compose/otel-collector.yaml",
			"exporters: [otlp_grpc/jaeger]", "exporters: [otlp_grpc/jeager]",
			`exporter "otlp_grpc/jeager", which is not defined`},
		{"grafana unknown host", "deploy/compose/grafana/provisioning/datasources/datasources.yaml",
			"http://jaeger:16686", "http://jaegr:16686",
			`host "jaegr" is not a compose service`},
		{"grafana dashboards not mounted", "docker-compose.yml",
			"      - ./deploy/compose/grafana/dashboards:/etc/grafana/dashboards:ro\n", "",
			"where the grafana service does not mount deploy/compose/grafana/dashboards"},
		{"grafana dashboard on an unknown datasource", "deploy/compose/grafana/dashboards/pizzashop.json",
			`"uid": "prometheus"`, `"uid": "prometheus-old"`,
			`datasource uid "prometheus-old" is not provisioned`},
		{"grafana dashboard not JSON", "deploy/compose/grafana/dashboards/pizzashop.json",
			"", "}",
			"pizzashop.json: JSON"},
		// kubernetes
		{"k8s unknown field", "deploy/k8s/menu.yaml",
			"  revisionHistoryLimit: 5\n", "  revisionHistoryLimt: 5\n",
			`unknown field "spec.revisionHistoryLimt"`},
		{"k8s manifest not in kustomization", "deploy/k8s/extra.yaml",
			"", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: pizzashop\n",
			"extra.yaml is not listed in resources"},
		{"kustomization lists a missing file", "deploy/k8s/kustomization.yaml",
			"  - gateway.yaml\n", "  - gateway.yaml\n  - missing.yaml\n",
			`lists "missing.yaml", which does not exist`},
		{"kustomization unknown field", "deploy/k8s/kustomization.yaml",
			"\nnamespace: pizzashop\n", "\nnamespac: pizzashop\n",
			`unknown field "namespac"`},
		{"k8s probe on wrong port", "deploy/k8s/menu.yaml",
			"          readinessProbe:\n            grpc:\n              port: 9090\n", "          readinessProbe:\n            grpc:\n              port: 9091\n",
			"readinessProbe probes gRPC port 9091"},
		{"k8s liveness follows the store", "deploy/k8s/kitchen.yaml",
			"          livenessProbe:\n            grpc:\n              port: 9090\n              service: pizzashop.serving\n", "          livenessProbe:\n            grpc:\n              port: 9090\n",
			`Deployment kitchen container kitchen: livenessProbe checks gRPC health service ""`},
		{"k8s startup follows the store", "deploy/k8s/order.yaml",
			"          startupProbe:\n            grpc:\n              port: 9090\n              service: pizzashop.serving\n", "          startupProbe:\n            grpc:\n              port: 9090\n",
			`Deployment order container order: startupProbe checks gRPC health service ""`},
		{"k8s no preStop sleep", "deploy/k8s/gateway.yaml",
			"            preStop:\n              sleep:\n                seconds: 5\n", "            postStart:\n              sleep:\n                seconds: 5\n",
			"Deployment gateway container gateway: no preStop sleep"},
		{"k8s grace shorter than the drain", "deploy/k8s/menu.yaml",
			"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 12",
			"Deployment menu container menu: terminationGracePeriodSeconds 12 is shorter"},
		{"k8s configmap misses a key", "deploy/k8s/configmap.yaml",
			"  LOG_LEVEL: info\n", "",
			"LOG_LEVEL is required"},
		{"k8s NATS_URL as a plain value", "deploy/k8s/kitchen.yaml",
			"            - name: NATS_URL\n              valueFrom:\n                secretKeyRef:\n                  name: pizzashop-nats\n                  key: NATS_URL\n",
			"            - name: NATS_URL\n              value: nats://nats:4222\n",
			"Deployment kitchen container kitchen: NATS_URL must come from a Secret"},
		{"k8s NATS_URL in the configmap", "deploy/k8s/configmap.yaml",
			"  LOG_LEVEL: info\n", "  LOG_LEVEL: info\n  NATS_URL: nats://pizzashop:REPLACE-ME-nats-placeholder@nats:4222\n",
			"ConfigMap pizzashop-config holds NATS_URL"},
		{"k8s NATS_URL without credentials", "deploy/k8s/secret.yaml",
			"  NATS_URL: nats://pizzashop:REPLACE-ME-nats-placeholder@nats:4222", "  NATS_URL: nats://nats:4222",
			"NATS_URL (Secret pizzashop-nats key NATS_URL) has no user and password"},
		{"k8s NATS_URL with another password", "deploy/k8s/secret.yaml",
			"  NATS_PASSWORD: REPLACE-ME-nats-placeholder", "  NATS_PASSWORD: REPLACE-ME-nats-placeholder-2",
			"has another password than the server's"},
		{"k8s NATS_URL at a missing Service", "deploy/k8s/secret.yaml",
			"  NATS_URL: nats://pizzashop:REPLACE-ME-nats-placeholder@nats:4222", "  NATS_URL: nats://pizzashop:REPLACE-ME-nats-placeholder@natz:4222",
			`no Service "natz"`},
		{"k8s nats without authorization", "deploy/k8s/nats.yaml",
			"    authorization {\n      user: $NATS_USER\n      password: $NATS_PASSWORD\n    }\n", "    debug: false\n",
			"the server does not require a user and password of its clients"},
		{"k8s nats without its config file", "deploy/k8s/nats.yaml",
			"            - -c\n            - /etc/nats/nats.conf\n", "",
			"no config file (-c)"},
		{"k8s nats password in the file", "deploy/k8s/nats.yaml",
			"password: $NATS_PASSWORD", "password: hunter2hunter2",
			"sets the password in the file"},
		{"k8s nats password from a plain value", "deploy/k8s/nats.yaml",
			"            - name: NATS_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: pizzashop-nats\n                  key: NATS_PASSWORD\n",
			"            - name: NATS_PASSWORD\n              value: hunter2hunter2\n",
			"the password ($NATS_PASSWORD) must come from a Secret"},
		{"k8s nats password on the command line", "deploy/k8s/nats.yaml",
			"            - -js\n", "            - -js\n            - --pass\n            - $(NATS_PASSWORD)\n",
			"--pass on the command line"},
		{"k8s no NetworkPolicy for nats", "deploy/k8s/networkpolicy.yaml",
			"spec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: nats\n", "spec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: natz\n",
			"no NetworkPolicy limits who reaches the nats pods"},
		{"k8s NetworkPolicy open to other namespaces", "deploy/k8s/networkpolicy.yaml",
			"    - from:\n        - podSelector:\n            matchExpressions:", "    - from:\n        - namespaceSelector: {}\n          podSelector:\n            matchExpressions:",
			"NetworkPolicy nats ingress rule 1 lets pods of other namespaces reach NATS"},
		{"k8s NetworkPolicy open to all", "deploy/k8s/networkpolicy.yaml",
			"      ports:\n        - port: 4222\n    - from:", "      ports:\n        - port: 4222\n    - ports:\n        - port: 4222\n    - from:",
			"NetworkPolicy nats ingress rule 2 lets every pod in the cluster"},
		{"k8s NetworkPolicy shuts a service out", "deploy/k8s/networkpolicy.yaml",
			"values: [menu, order, kitchen, delivery]", "values: [menu, order, delivery]",
			"no NetworkPolicy lets the kitchen pods reach the NATS client port 4222"},
		{"k8s secret key renamed", "deploy/k8s/secret.yaml",
			"  AUTH_SECRET: REPLACE-ME", "  AUTH_SECRE: REPLACE-ME",
			`Secret "pizzashop-auth" has no key "AUTH_SECRET"`},
		{"k8s secret too short", "deploy/k8s/secret.yaml",
			"  AUTH_SECRET: REPLACE-ME-this-placeholder-is-not-a-secret", "  AUTH_SECRET: short",
			"AUTH_SECRET is 5 bytes"},
		{"compose secret too short", "docker-compose.yml",
			"${AUTH_SECRET:-}", "${AUTH_SECRET:-short}",
			"AUTH_SECRET is 5 bytes"},
		{"k8s secret is the development key", "deploy/k8s/secret.yaml",
			"  AUTH_SECRET: REPLACE-ME-this-placeholder-is-not-a-secret", "  AUTH_SECRET: pizzashop-local-dev-secret-do-not-use-in-production",
			"Secret pizzashop-auth: AUTH_SECRET is the public development key"},
		{"k8s gateway without the key", "deploy/k8s/gateway.yaml",
			"            - name: AUTH_SECRET\n", "            - name: AUTH_SECRET_UNUSED\n",
			"Deployment gateway container gateway: environment variable AUTH_SECRET is required by the gateway binary"},
		{"k8s demo in the configmap", "deploy/k8s/configmap.yaml",
			`PIZZASHOP_DEMO: "false"`, `PIZZASHOP_DEMO: "true"`,
			"PIZZASHOP_DEMO=true by default"},
		{"k8s image named otherwise", "deploy/k8s/order.yaml",
			"image: pizzashop/order", "image: pizzashop-order",
			`image "pizzashop-order": want [registry/]pizzashop/order:<tag>`},
		{"k8s NATS version", "deploy/k8s/nats.yaml",
			"image: nats:2.15.2-alpine", "image: nats:2.14.0-alpine",
			`StatefulSet nats container nats: image "nats:2.14.0-alpine" runs NATS "2.14.0"`},
		{"k8s gateway readiness path", "deploy/k8s/gateway.yaml",
			"path: /readyz", "path: /ready",
			`readinessProbe path is "/ready"`},
		{"k8s writable root filesystem", "deploy/k8s/kitchen.yaml",
			"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
			"Deployment kitchen container kitchen: readOnlyRootFilesystem must be true"},
		{"k8s unpinned image", "deploy/k8s/kustomization.yaml",
			"newName: registry.example.com/pizzashop/order\n    newTag: \"0.1.0\"", "newName: registry.example.com/pizzashop/order\n    newTag: latest",
			"needs a pinned tag"},
		{"k8s service selector typo", "deploy/k8s/delivery.yaml",
			"  selector:\n    app.kubernetes.io/name: delivery\n", "  selector:\n    app.kubernetes.io/name: delivry\n",
			"Service delivery selects no workload"},
		{"k8s nats without volume", "deploy/k8s/nats.yaml",
			"              mountPath: /data\n", "              mountPath: /var/data\n",
			"store dir /data is not on a volumeClaimTemplate"},
		{"k8s addr through the ClusterIP Service", "deploy/k8s/configmap.yaml",
			"MENU_ADDR: dns:///menu-headless:9090", "MENU_ADDR: menu:9090",
			`MENU_ADDR="menu:9090": want dns:///<headless Service>:<port>`},
		{"k8s addr at a non-headless Service", "deploy/k8s/configmap.yaml",
			"ORDER_ADDR: dns:///order-headless:9090", "ORDER_ADDR: dns:///order:9090",
			"Service order is not headless"},
		{"k8s headless Service made ClusterIP", "deploy/k8s/kitchen.yaml",
			"  name: kitchen-headless\n  namespace: pizzashop\n  labels:\n    app.kubernetes.io/name: kitchen\n    app.kubernetes.io/component: service\nspec:\n  clusterIP: None\n",
			"  name: kitchen-headless\n  namespace: pizzashop\n  labels:\n    app.kubernetes.io/name: kitchen\n    app.kubernetes.io/component: service\nspec:\n",
			"Service kitchen-headless is not headless"},
		{"k8s addr at another service's pods", "deploy/k8s/configmap.yaml",
			"DELIVERY_ADDR: dns:///delivery-headless:9090", "DELIVERY_ADDR: dns:///kitchen-headless:9090",
			"Service kitchen-headless does not select the delivery pods"},
		{"k8s addr on the wrong port", "deploy/k8s/configmap.yaml",
			"KITCHEN_ADDR: dns:///kitchen-headless:9090", "KITCHEN_ADDR: dns:///kitchen-headless:9091",
			"kitchen listens for gRPC on port 9090"},
		// Dockerfile and build context
		{"dockerfile healthcheck", "deploy/docker/service.Dockerfile",
			"", "HEALTHCHECK CMD [\"/app\", \"-health\"]\n",
			"HEALTHCHECK"},
		{"dockerfile lint", "deploy/docker/service.Dockerfile",
			"AS build", "as build",
			"FromAsCasing"},
		{"dockerfile root user", "deploy/docker/service.Dockerfile",
			"USER nonroot:nonroot", "USER root",
			"non-root USER"},
		{"dockerfile unknown instruction", "deploy/docker/service.Dockerfile",
			"ENTRYPOINT [", "ENTRYPIONT [",
			"unknown instruction"},
		{"dockerignore drops a module", ".dockerignore",
			"", "pkg\n",
			"excludes pkg/go.mod"},
		{"dockerignore keeps .git", ".dockerignore",
			"\n.git\n", "\n",
			"should exclude .git"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			copyDeployTree(t, src, root)
			path := filepath.Join(root, tc.file)
			data, err := os.ReadFile(path)
			switch {
			case tc.old == "":
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				data = append(data, tc.new...)
			case err != nil:
				t.Fatal(err)
			case !bytes.Contains(data, []byte(tc.old)):
				t.Fatalf("%s does not contain %q: the mutation is stale", tc.file, tc.old)
			default:
				data = bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, out := run(t, root)
			wantProblem(t, r, out, tc.wantSubst)
		})
	}
}

// copyDeployTree copies the files the checker reads from src to dst.
func copyDeployTree(t *testing.T, src, dst string) {
	t.Helper()
	for _, rel := range []string{"go.work", "go.work.sum", ".dockerignore", "docker-compose.yml", "deploy/compose", "deploy/k8s", "deploy/docker", "pkg/go.mod", "pkg/auth/token.go"} {
		from := filepath.Join(src, rel)
		info, err := os.Stat(from)
		if os.IsNotExist(err) && rel == "go.work.sum" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsDir() {
			copyFile(t, from, filepath.Join(dst, rel))
			continue
		}
		err = filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			r, _ := filepath.Rel(src, p)
			copyFile(t, p, filepath.Join(dst, r))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
