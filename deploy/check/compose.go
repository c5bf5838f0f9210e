package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
	"sigs.k8s.io/yaml"
)

// loadCompose loads a compose file the way `docker compose` does (schema
// validation, interpolation, normalization, consistency checks), with the
// directory of the file as project directory. The environment is empty and
// no .env file is read, so the result does not depend on the caller's shell:
// every ${VAR} in the file must carry a default. compose-go's warnings
// (unset variable, obsolete attribute, YAML 1.1 booleans...) are returned
// as problems too.
func loadCompose(ctx context.Context, path string) (*types.Project, []string, error) {
	warnings := captureLogrusWarnings()
	defer warnings.stop()

	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithEnv([]string{}),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, nil, err
	}
	project, err := opts.LoadProject(ctx)
	return project, warnings.stop(), err
}

// checkCompose loads docker-compose.yml and checks it against the runtime
// contract. It returns the project (nil when it does not load).
func checkCompose(ctx context.Context, r *report, path string) *types.Project {
	start := len(r.problems)
	if _, err := os.Stat(path); err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return nil
	}
	project, warnings, err := loadCompose(ctx, path)
	for _, w := range warnings {
		r.failf(path, "compose warning: %s", w)
	}
	if err != nil {
		msg := err.Error()
		if strings.HasSuffix(msg, " false schema") { // jsonschema's wording for a key the spec does not allow
			msg = strings.TrimSuffix(msg, " false schema") + ": unknown attribute (not in the Compose spec)"
		}
		r.failf(path, "compose load: %s", msg)
		r.file(path, start, "")
		return nil
	}
	checkComposeProject(r, path, project)
	r.file(path, start, fmt.Sprintf("project %q, %d services", project.Name, len(project.Services)))
	return project
}

func checkComposeProject(r *report, path string, p *types.Project) {
	for _, name := range requiredComposeServices {
		if _, ok := p.Services[name]; !ok {
			r.failf(path, "required service %q is missing", name)
		}
	}

	// Published ports: only the allowed ones, and each of those published.
	for _, name := range sortedKeys(p.Services) {
		svc := p.Services[name]
		want, allowed := publishedPorts[name]
		seen := false
		for _, port := range svc.Ports {
			if port.Published == "" {
				continue
			}
			if !allowed || port.Target != want {
				r.failf(path, "service %q publishes container port %d to the host; only %s may be published",
					name, port.Target, allowedPortsText())
				continue
			}
			seen = true
		}
		if allowed && !seen {
			r.failf(path, "service %q must publish port %d to the host", name, want)
		}
	}

	// Bind mounts must point at files that exist.
	for _, name := range sortedKeys(p.Services) {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				r.failf(path, "service %q mounts %s, which does not exist", name, r.rel(v.Source))
			}
		}
	}

	// Infrastructure with a health check, so services can wait for it.
	for _, name := range []string{"mongo", "nats"} {
		svc, ok := p.Services[name]
		if !ok {
			continue
		}
		if svc.HealthCheck == nil || svc.HealthCheck.Disable || len(svc.HealthCheck.Test) == 0 {
			r.failf(path, "service %q needs a healthcheck (services wait for it with condition service_healthy)", name)
		}
	}
	if nats, ok := p.Services["nats"]; ok {
		r.truth.checkNATSImage(r, path, `service "nats"`, nats.Image)
	}
	replSet := ""
	if mongo, ok := p.Services["mongo"]; ok {
		replSet = flagValue(mongo.Command, "--replSet")
		if replSet == "" {
			r.failf(path, "service \"mongo\" must run as a replica set (command --replSet <name>)")
		}
	}

	for _, name := range goBinaries {
		svc, ok := p.Services[name]
		if !ok {
			continue
		}
		checkComposeGoService(r, path, p, name, svc, replSet)
	}
}

func checkComposeGoService(r *report, path string, p *types.Project, name string, svc types.ServiceConfig, replSet string) {
	// One name per image, as Kubernetes pulls it.
	if !imageFor(svc.Image, name) {
		r.failf(path, "service %q: image %q: want pizzashop/%s:<tag>, the name the Kubernetes manifests use", name, svc.Image, name)
	}
	// Built from the shared Dockerfile with SERVICE=<name>.
	if svc.Build == nil {
		r.failf(path, "service %q has no build section", name)
	} else {
		if filepath.Clean(svc.Build.Context) != filepath.Clean(p.WorkingDir) {
			r.failf(path, "service %q: build context must be the repo root (go.work), got %s", name, svc.Build.Context)
		}
		df := svc.Build.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if !filepath.IsAbs(df) {
			df = filepath.Join(svc.Build.Context, df)
		}
		if _, err := os.Stat(df); err != nil {
			r.failf(path, "service %q: dockerfile %s does not exist", name, r.rel(df))
		} else if filepath.Base(df) != "service.Dockerfile" {
			r.failf(path, "service %q: must be built from deploy/docker/service.Dockerfile, got %s", name, r.rel(df))
		}
		if arg := svc.Build.Args["SERVICE"]; arg == nil || *arg != name {
			r.failf(path, "service %q: build arg SERVICE must be %q", name, name)
		}
	}

	env := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	checkEnvContract(r, path, fmt.Sprintf("service %q", name), name, env, func(host string) bool {
		_, ok := p.Services[host]
		return ok
	})
	grpcPorts := map[string]uint32{}
	for _, s := range grpcServices {
		if other, ok := p.Services[s]; ok {
			if v := other.Environment["GRPC_ADDR"]; v != nil {
				if port, ok := portOf(*v); ok {
					grpcPorts[s] = port
				}
			}
		}
	}
	checkAddrTargets(r, path, fmt.Sprintf("service %q", name), env, grpcPorts)
	r.truth.checkSecretDefaults(r, path, fmt.Sprintf("service %q", name), env)
	if _, ok := env["AUTH_SECRET"]; ok {
		if _, ok := env[demoEnv]; !ok {
			r.failf(path, "service %q: %s is not passed through, so a local demo cannot be declared: set %s: ${%s:-false}", name, demoEnv, demoEnv, demoEnv)
		}
	}

	if replSet != "" {
		if uri, ok := env["MONGO_URI"]; ok {
			if u, err := url.Parse(uri); err == nil && u.Query().Get("replicaSet") != replSet {
				r.failf(path, "service %q: MONGO_URI must name replicaSet=%s (the set mongo runs), got %q", name, replSet, uri)
			}
		}
	}

	if name != "gateway" {
		for _, infra := range []string{"mongo", "nats"} {
			dep, ok := svc.DependsOn[infra]
			if !ok || dep.Condition != types.ServiceConditionHealthy {
				r.failf(path, "service %q must depend on %q with condition service_healthy", name, infra)
			}
		}
	}
}

// checkEnvContract checks one binary's environment: every variable it needs
// is set and non-empty, fixed values are right, listen addresses parse, and
// URL-shaped values point at a host that exists (known reports that).
func checkEnvContract(r *report, path, where, binary string, env map[string]string, known func(host string) bool) {
	for _, k := range requiredEnv(binary) {
		if _, ok := env[k]; ok && k == "AUTH_SECRET" {
			continue // may be empty: the operator sets it, or the service refuses to start
		}
		if strings.TrimSpace(env[k]) == "" {
			r.failf(path, "%s: environment variable %s is required by the %s binary and is missing or empty", where, k, binary)
		}
	}
	if v, ok := env["AUTH_SECRET"]; ok && v != fromRef && v != "" && len(v) < minAuthSecretLen {
		r.failf(path, "%s: AUTH_SECRET is %d bytes; the services refuse keys shorter than %d", where, len(v), minAuthSecretLen)
	}
	for k, want := range fixedEnv(binary) {
		if got, ok := env[k]; ok && got != want {
			r.failf(path, "%s: %s must be %q, got %q", where, k, want, got)
		}
	}
	for _, k := range []string{"GRPC_ADDR", "METRICS_ADDR", "HTTP_ADDR"} {
		if v, ok := env[k]; ok && v != "" {
			if _, ok := portOf(v); !ok {
				r.failf(path, "%s: %s=%q is not a listen address like \":9090\"", where, k, v)
			}
		}
	}
	for _, k := range []string{"MONGO_URI", "NATS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v, ok := env[k]
		if !ok || v == "" || v == fromRef {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			r.failf(path, "%s: %s=%q is not a URL", where, k, v)
			continue
		}
		if known == nil {
			continue
		}
		for _, hp := range strings.Split(u.Host, ",") {
			host := hp
			if h, _, err := net.SplitHostPort(hp); err == nil {
				host = h
			}
			if !known(host) {
				r.failf(path, "%s: %s points at host %q, which is not defined here", where, k, host)
			}
		}
	}
}

// checkAddrTargets checks MENU_ADDR and friends: host:port where host is the
// named service and port its gRPC port.
func checkAddrTargets(r *report, path, where string, env map[string]string, grpcPorts map[string]uint32) {
	for k, target := range addrEnv {
		v, ok := env[k]
		if !ok || v == "" {
			continue
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			r.failf(path, "%s: %s=%q is not host:port", where, k, v)
			continue
		}
		if host != target {
			r.failf(path, "%s: %s=%q should point at the %q service", where, k, v, target)
		}
		if want, ok := grpcPorts[target]; ok && port != fmt.Sprint(want) {
			r.failf(path, "%s: %s=%q but %s listens for gRPC on port %d", where, k, v, target, want)
		}
	}
}

// checkComposeCompanions checks the config files the compose stack mounts.
func checkComposeCompanions(r *report, root string, p *types.Project) {
	known := func(host string) bool {
		if host == "localhost" || host == "127.0.0.1" || host == "0.0.0.0" {
			return true
		}
		_, ok := p.Services[host]
		return ok
	}
	checkPrometheusConfig(r, filepath.Join(root, "deploy", "compose", "prometheus.yml"), p, known)
	checkOtelConfig(r, filepath.Join(root, "deploy", "compose", "otel-collector.yaml"), known)
	dsDir := filepath.Join(root, "deploy", "compose", "grafana", "provisioning", "datasources")
	files, _ := filepath.Glob(filepath.Join(dsDir, "*.y*ml"))
	if len(files) == 0 {
		start := len(r.problems)
		r.failf(dsDir, "no Grafana datasource provisioning file")
		r.file(dsDir, start, "")
	}
	uids := map[string]bool{}
	for _, f := range files {
		for _, uid := range checkGrafanaDatasources(r, f, known) {
			uids[uid] = true
		}
	}
	checkGrafanaDashboards(r, root, p, uids)
}

func readYAML(r *report, path string, into any) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		r.failf(path, "%v", err)
		return false
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		r.failf(path, "YAML: %v", err)
		return false
	}
	return true
}

func checkPrometheusConfig(r *report, path string, p *types.Project, known func(string) bool) {
	start := len(r.problems)
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if readYAML(r, path, &cfg) {
		scraped := map[string]bool{} // "host:port" scraped at /metrics
		jobs := map[string]bool{}
		for _, sc := range cfg.ScrapeConfigs {
			if sc.JobName == "" {
				r.failf(path, "scrape config without job_name")
			}
			if jobs[sc.JobName] {
				r.failf(path, "duplicate job_name %q", sc.JobName)
			}
			jobs[sc.JobName] = true
			for _, st := range sc.StaticConfigs {
				for _, t := range st.Targets {
					host, _, err := net.SplitHostPort(t)
					if err != nil {
						r.failf(path, "job %q: target %q is not host:port", sc.JobName, t)
						continue
					}
					if !known(host) {
						r.failf(path, "job %q: target host %q is not a compose service", sc.JobName, host)
					}
					if sc.MetricsPath == "" || sc.MetricsPath == "/metrics" {
						scraped[t] = true
					}
				}
			}
		}
		for _, name := range goBinaries {
			svc, ok := p.Services[name]
			if !ok {
				continue
			}
			key := "METRICS_ADDR"
			if name == "gateway" {
				key = "HTTP_ADDR"
			}
			v := svc.Environment[key]
			if v == nil {
				continue
			}
			port, ok := portOf(*v)
			if !ok {
				continue
			}
			if t := fmt.Sprintf("%s:%d", name, port); !scraped[t] {
				r.failf(path, "nothing scrapes %s/metrics (%s of %s)", t, key, name)
			}
		}
	}
	r.file(path, start, fmt.Sprintf("%d scrape jobs", len(cfg.ScrapeConfigs)))
}

func checkOtelConfig(r *report, path string, known func(string) bool) {
	start := len(r.problems)
	var cfg struct {
		Receivers  map[string]map[string]any `json:"receivers"`
		Processors map[string]map[string]any `json:"processors"`
		Exporters  map[string]map[string]any `json:"exporters"`
		Extensions map[string]map[string]any `json:"extensions"`
		Service    struct {
			Extensions []string `json:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `json:"receivers"`
				Processors []string `json:"processors"`
				Exporters  []string `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	if readYAML(r, path, &cfg) {
		if _, ok := cfg.Service.Pipelines["traces"]; !ok {
			r.failf(path, "no traces pipeline")
		}
		ref := func(kind string, defined map[string]map[string]any, names []string, where string) {
			for _, n := range names {
				if _, ok := defined[n]; !ok {
					r.failf(path, "%s uses %s %q, which is not defined", where, kind, n)
				}
			}
		}
		for _, pn := range sortedKeys(cfg.Service.Pipelines) {
			pl := cfg.Service.Pipelines[pn]
			where := fmt.Sprintf("pipeline %q", pn)
			if len(pl.Receivers) == 0 || len(pl.Exporters) == 0 {
				r.failf(path, "%s needs at least one receiver and one exporter", where)
			}
			ref("receiver", cfg.Receivers, pl.Receivers, where)
			ref("processor", cfg.Processors, pl.Processors, where)
			ref("exporter", cfg.Exporters, pl.Exporters, where)
		}
		ref("extension", cfg.Extensions, cfg.Service.Extensions, "service")
		for _, en := range sortedKeys(cfg.Exporters) {
			ep, _ := cfg.Exporters[en]["endpoint"].(string)
			if ep == "" {
				continue
			}
			hostport := ep
			if u, err := url.Parse(ep); err == nil && u.Host != "" {
				hostport = u.Host
			}
			host, _, err := net.SplitHostPort(hostport)
			if err != nil {
				host = hostport
			}
			if !known(host) {
				r.failf(path, "exporter %q sends to host %q, which is not a compose service", en, host)
			}
		}
	}
	r.file(path, start, fmt.Sprintf("%d pipelines", len(cfg.Service.Pipelines)))
}

// checkGrafanaDatasources checks one datasource provisioning file and
// returns the uids it provisions.
func checkGrafanaDatasources(r *report, path string, known func(string) bool) []string {
	start := len(r.problems)
	var cfg struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"datasources"`
	}
	var uids []string
	if readYAML(r, path, &cfg) {
		if cfg.APIVersion != 1 {
			r.failf(path, "apiVersion must be 1")
		}
		kinds := map[string]bool{}
		for _, ds := range cfg.Datasources {
			kinds[ds.Type] = true
			if ds.UID != "" {
				uids = append(uids, ds.UID)
			}
			u, err := url.Parse(ds.URL)
			if err != nil || u.Host == "" {
				r.failf(path, "datasource %q: url %q is not a URL", ds.Name, ds.URL)
				continue
			}
			if !known(u.Hostname()) {
				r.failf(path, "datasource %q: host %q is not a compose service", ds.Name, u.Hostname())
			}
		}
		for _, t := range []string{"prometheus", "jaeger"} {
			if !kinds[t] {
				r.failf(path, "no %s datasource", t)
			}
		}
	}
	r.file(path, start, fmt.Sprintf("%d datasources", len(cfg.Datasources)))
	return uids
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func allowedPortsText() string {
	var parts []string
	for _, name := range sortedKeys(publishedPorts) {
		parts = append(parts, fmt.Sprintf("%s:%d", name, publishedPorts[name]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// logrusCapture collects the warnings compose-go logs through logrus while
// a project loads, and keeps them off the terminal.
type logrusCapture struct {
	mu      sync.Mutex
	msgs    []string
	prevOut io.Writer
	prevHk  logrus.LevelHooks
	done    bool
}

var logrusMu sync.Mutex

func captureLogrusWarnings() *logrusCapture {
	logrusMu.Lock()
	c := &logrusCapture{prevOut: logrus.StandardLogger().Out}
	c.prevHk = logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.SetOutput(io.Discard)
	logrus.AddHook(c)
	return c
}

func (c *logrusCapture) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (c *logrusCapture) Fire(e *logrus.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, e.Message)
	return nil
}

func (c *logrusCapture) stop() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done {
		c.done = true
		logrus.StandardLogger().ReplaceHooks(c.prevHk)
		logrus.SetOutput(c.prevOut)
		logrusMu.Unlock()
	}
	return slices.Clone(c.msgs)
}
