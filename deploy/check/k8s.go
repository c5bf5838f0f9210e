package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	ktypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const kustomizationFile = "kustomization.yaml"

// strictDecoder decodes any built-in Kubernetes kind and rejects unknown or
// duplicate fields, wrong types and unregistered kinds.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// k8sObject is one decoded document.
type k8sObject struct {
	obj  runtime.Object
	meta metav1.Object
	kind string
	desc string // "apps/v1 Deployment menu"
}

// decodeK8sDocs splits a multi-document YAML stream and decodes every
// non-empty document strictly. Errors name the document by its index.
func decodeK8sDocs(data []byte) ([]k8sObject, []error) {
	var objs []k8sObject
	var errs []error
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %v", i, err))
			break
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			errs = append(errs, fmt.Errorf("document %d: YAML: %v", i, err))
			continue
		}
		if len(probe) == 0 { // only comments or "---"
			i--
			continue
		}
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %v", i, err))
			continue
		}
		m, err := metaOf(obj)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %v", i, err))
			continue
		}
		if m.GetName() == "" {
			errs = append(errs, fmt.Errorf("document %d (%s): metadata.name is required", i, gvk.Kind))
		}
		objs = append(objs, k8sObject{
			obj:  obj,
			meta: m,
			kind: gvk.Kind,
			desc: fmt.Sprintf("%s %s %s", gvk.GroupVersion().String(), gvk.Kind, m.GetName()),
		})
	}
	return objs, errs
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// checkK8sFile strictly decodes every document of one manifest file.
func checkK8sFile(r *report, path string) []k8sObject {
	start := len(r.problems)
	data, err := os.ReadFile(path)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return nil
	}
	objs, errs := decodeK8sDocs(data)
	for _, err := range errs {
		r.failf(path, "%v", err)
	}
	if len(objs) == 0 && len(errs) == 0 {
		r.failf(path, "no Kubernetes object in file")
	}
	descs := make([]string, 0, len(objs))
	for _, o := range objs {
		descs = append(descs, o.kind+"/"+o.meta.GetName())
	}
	r.file(path, start, strings.Join(descs, ", "))
	return objs
}

// checkK8sDir checks every *.yaml / *.yml in dir, the kustomization, and the
// kustomize build output.
func checkK8sDir(r *report, dir string) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	slices.Sort(files)
	if len(files) == 0 {
		start := len(r.problems)
		r.failf(dir, "no manifests")
		r.file(dir, start, "")
		return
	}
	hasKustomization := false
	for _, f := range files {
		if filepath.Base(f) == kustomizationFile {
			hasKustomization = true
			continue
		}
		checkK8sFile(r, f)
	}
	kpath := filepath.Join(dir, kustomizationFile)
	if !hasKustomization {
		start := len(r.problems)
		r.failf(kpath, "missing")
		r.file(kpath, start, "")
		return
	}
	if !checkKustomization(r, kpath, files) {
		return
	}
	checkKustomizeBuild(r, dir)
}

// checkKustomization decodes kustomization.yaml strictly, checks that every
// file it lists exists and that every manifest in the directory is listed.
func checkKustomization(r *report, path string, dirFiles []string) bool {
	start := len(r.problems)
	dir := filepath.Dir(path)
	data, err := os.ReadFile(path)
	if err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return false
	}
	var k ktypes.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		r.failf(path, "%v", err)
		r.file(path, start, "")
		return false
	}
	if k.Kind != "" && k.Kind != ktypes.KustomizationKind {
		r.failf(path, "kind must be %s, got %q", ktypes.KustomizationKind, k.Kind)
	}
	if k.APIVersion != "" && k.APIVersion != ktypes.KustomizationVersion {
		r.failf(path, "apiVersion must be %s, got %q", ktypes.KustomizationVersion, k.APIVersion)
	}
	var listed []string
	listed = append(listed, k.Resources...)
	listed = append(listed, k.Components...)
	for _, p := range k.Patches {
		if p.Path != "" {
			listed = append(listed, p.Path)
		}
	}
	seen := map[string]bool{}
	for _, res := range listed {
		if strings.Contains(res, "://") || strings.HasPrefix(res, "github.com/") {
			continue // remote base
		}
		p := filepath.Clean(filepath.Join(dir, res))
		if seen[p] {
			r.failf(path, "%q is listed twice", res)
		}
		seen[p] = true
		if _, err := os.Stat(p); err != nil {
			r.failf(path, "lists %q, which does not exist", res)
		}
	}
	for _, f := range dirFiles {
		if filepath.Base(f) == kustomizationFile {
			continue
		}
		if !seen[filepath.Clean(f)] {
			r.failf(path, "%s is not listed in resources (it would never be applied)", filepath.Base(f))
		}
	}
	r.file(path, start, fmt.Sprintf("%d resources listed", len(k.Resources)))
	return len(r.problems) == start
}

// checkKustomizeBuild renders the kustomization like `kubectl kustomize`,
// decodes the result strictly and checks it against the runtime contract.
func checkKustomizeBuild(r *report, dir string) {
	label := filepath.Join(dir, kustomizationFile) + " [kustomize build]"
	start := len(r.problems)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		r.failf(label, "kustomize build: %v", err)
		r.file(label, start, "")
		return
	}
	out, err := resMap.AsYaml()
	if err != nil {
		r.failf(label, "kustomize build: %v", err)
		r.file(label, start, "")
		return
	}
	objs, errs := decodeK8sDocs(out)
	for _, err := range errs {
		r.failf(label, "rendered %v", err)
	}
	if len(errs) == 0 {
		checkK8sObjects(r, label, objs)
	} else {
		r.failf(label, "contract checks skipped until every rendered document decodes")
	}
	r.file(label, start, fmt.Sprintf("%d objects rendered", len(objs)))
}

// cluster indexes the rendered objects.
type cluster struct {
	namespace    string
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	namespaces   map[string]bool
}

const wantNamespace = "pizzashop"

// fromRef stands for an env value that comes from a ConfigMap/Secret key or
// the downward API: present, but not known here.
const fromRef = "\x00ref"

func checkK8sObjects(r *report, path string, objs []k8sObject) {
	c := cluster{
		configMaps:   map[string]*corev1.ConfigMap{},
		secrets:      map[string]*corev1.Secret{},
		services:     map[string]*corev1.Service{},
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		netpols:      map[string]*networkingv1.NetworkPolicy{},
		namespaces:   map[string]bool{},
	}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Namespace:
			c.namespaces[v.Name] = true
			continue
		case *corev1.ConfigMap:
			c.configMaps[v.Name] = v
		case *corev1.Secret:
			c.secrets[v.Name] = v
		case *corev1.Service:
			c.services[v.Name] = v
		case *appsv1.Deployment:
			c.deployments[v.Name] = v
		case *appsv1.StatefulSet:
			c.statefulSets[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			c.pdbs[v.Name] = v
		case *networkingv1.NetworkPolicy:
			c.netpols[v.Name] = v
		}
		if ns := o.meta.GetNamespace(); ns != wantNamespace {
			r.failf(path, "%s is in namespace %q, want %q", o.desc, ns, wantNamespace)
		}
	}
	if !c.namespaces[wantNamespace] {
		r.failf(path, "no Namespace %q", wantNamespace)
	}
	if s, ok := c.secrets["pizzashop-auth"]; !ok {
		r.failf(path, "no Secret pizzashop-auth")
	} else if !secretHasKey(s, "AUTH_SECRET") {
		r.failf(path, "Secret pizzashop-auth has no key AUTH_SECRET")
	} else if n := secretLen(s, "AUTH_SECRET"); n < minAuthSecretLen {
		r.failf(path, "Secret pizzashop-auth: AUTH_SECRET is %d bytes; the services refuse keys shorter than %d", n, minAuthSecretLen)
	} else if why := r.truth.unsafeSecret(secretValue(s, "AUTH_SECRET")); why == "is the public development key" {
		r.failf(path, "Secret pizzashop-auth: AUTH_SECRET %s", why)
	} else if why != "" {
		// Allowed in the file: the services refuse it at start unless
		// PIZZASHOP_DEMO=true, so nobody runs on it by mistake.
		r.note(path, "Secret pizzashop-auth: AUTH_SECRET %s; the services refuse to start with it until it is replaced", why)
	}

	for _, name := range goBinaries {
		d, ok := c.deployments[name]
		if !ok {
			r.failf(path, "no Deployment %q", name)
			continue
		}
		checkDeployment(r, path, &c, d)
	}
	checkNATS(r, path, &c)
	checkNATSNetworkPolicy(r, path, &c)

	// Selectors: every workload selects its own pods; every PDB and Service
	// selects some workload.
	type podSet struct {
		desc   string
		labels labels.Set
	}
	var pods []podSet
	for _, d := range c.deployments {
		checkSelectorMatches(r, path, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		pods = append(pods, podSet{"Deployment " + d.Name, d.Spec.Template.Labels})
	}
	for _, s := range c.statefulSets {
		checkSelectorMatches(r, path, "StatefulSet "+s.Name, s.Spec.Selector, s.Spec.Template.Labels)
		pods = append(pods, podSet{"StatefulSet " + s.Name, s.Spec.Template.Labels})
	}
	for _, name := range sortedKeys(c.pdbs) {
		sel, err := metav1.LabelSelectorAsSelector(c.pdbs[name].Spec.Selector)
		matched := false
		for _, p := range pods {
			if err == nil && !sel.Empty() && sel.Matches(p.labels) {
				matched = true
			}
		}
		if !matched {
			r.failf(path, "PodDisruptionBudget %s selects no workload", name)
		}
	}
	for _, name := range sortedKeys(c.services) {
		sel := labels.SelectorFromSet(c.services[name].Spec.Selector)
		matched := false
		for _, p := range pods {
			if len(c.services[name].Spec.Selector) > 0 && sel.Matches(p.labels) {
				matched = true
			}
		}
		if !matched {
			r.failf(path, "Service %s selects no workload", name)
		}
	}
}

func checkSelectorMatches(r *report, path, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		r.failf(path, "%s: invalid or empty selector", what)
		return
	}
	if !s.Matches(labels.Set(podLabels)) {
		r.failf(path, "%s: selector %s does not match its pod template labels", what, s)
	}
}

func secretHasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

func secretValue(s *corev1.Secret, key string) string {
	if v, ok := s.StringData[key]; ok {
		return v
	}
	return string(s.Data[key])
}

func secretLen(s *corev1.Secret, key string) int {
	if v, ok := s.StringData[key]; ok {
		return len(v)
	}
	return len(s.Data[key])
}

func checkDeployment(r *report, path string, c *cluster, d *appsv1.Deployment) {
	name := d.Name
	where := "Deployment " + name
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		r.failf(path, "%s: replicas must be at least 2", where)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		r.failf(path, "%s: no container", where)
		return
	}
	ctr := pod.Containers[0]
	where = fmt.Sprintf("Deployment %s container %s", name, ctr.Name)

	if !imageFor(ctr.Image, name) {
		r.failf(path, "%s: image %q: want [registry/]pizzashop/%s:<tag>, the name docker-compose.yml builds", where, ctr.Image, name)
	}
	if !strings.Contains(ctr.Image, "@") {
		tag := ""
		if i := strings.LastIndex(ctr.Image, ":"); i > strings.LastIndex(ctr.Image, "/") {
			tag = ctr.Image[i+1:]
		}
		if tag == "" || tag == "latest" {
			r.failf(path, "%s: image %q needs a pinned tag or digest", where, ctr.Image)
		}
	}

	checkPodSecurity(r, path, where, pod, ctr)
	checkResources(r, path, where, ctr.Resources)
	checkPreStop(r, path, where, pod, ctr)

	env := resolveEnv(r, path, where, c, ctr)
	checkEnvContract(r, path, where, name, env, func(host string) bool {
		if strings.Contains(host, ".") {
			return true // fully qualified: outside this kustomization (managed Mongo, collector)
		}
		_, ok := c.services[host]
		return ok
	})
	checkK8sAddrTargets(r, path, where, c, env)
	r.truth.checkSecretDefaults(r, path, where, env)

	ports := map[string]int32{}
	declared := map[int32]bool{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
		declared[p.ContainerPort] = true
	}
	resolvePort := func(p intOrName) int32 {
		if p.name != "" {
			return ports[p.name]
		}
		return p.num
	}
	listen := func(key string) int32 {
		if v, ok := env[key]; ok {
			if port, ok := portOf(v); ok {
				return int32(port)
			}
		}
		return 0
	}

	if name == "gateway" {
		httpPort := listen("HTTP_ADDR")
		if httpPort != 0 && !declared[httpPort] {
			r.failf(path, "%s: HTTP_ADDR port %d is not a declared containerPort", where, httpPort)
		}
		for _, pc := range []struct {
			kind  string
			probe *corev1.Probe
			want  string
		}{{"readinessProbe", ctr.ReadinessProbe, "/readyz"}, {"livenessProbe", ctr.LivenessProbe, "/healthz"}} {
			if pc.probe == nil || pc.probe.HTTPGet == nil {
				r.failf(path, "%s: %s must be httpGet %s", where, pc.kind, pc.want)
				continue
			}
			if pc.probe.HTTPGet.Path != pc.want {
				r.failf(path, "%s: %s path is %q, want %q", where, pc.kind, pc.probe.HTTPGet.Path, pc.want)
			}
			if got := resolvePort(intOrNameOf(pc.probe.HTTPGet.Port.IntVal, pc.probe.HTTPGet.Port.StrVal)); got != httpPort {
				r.failf(path, "%s: %s probes port %d, but the gateway listens on %d", where, pc.kind, got, httpPort)
			}
		}
		checkServiceTargets(r, path, c, name, map[int32]string{httpPort: "HTTP_ADDR"}, ports)
		return
	}

	grpcPort, metricsPort := listen("GRPC_ADDR"), listen("METRICS_ADDR")
	for port, key := range map[int32]string{grpcPort: "GRPC_ADDR", metricsPort: "METRICS_ADDR"} {
		if port != 0 && !declared[port] {
			r.failf(path, "%s: %s port %d is not a declared containerPort", where, key, port)
		}
	}
	for _, pc := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"readinessProbe", ctr.ReadinessProbe}, {"livenessProbe", ctr.LivenessProbe}} {
		if pc.probe == nil || pc.probe.GRPC == nil {
			r.failf(path, "%s: %s must be a gRPC probe (grpc.health.v1)", where, pc.kind)
			continue
		}
		if pc.probe.GRPC.Port != grpcPort {
			r.failf(path, "%s: %s probes gRPC port %d, but GRPC_ADDR is port %d", where, pc.kind, pc.probe.GRPC.Port, grpcPort)
		}
	}
	// The whole-server status ("") goes NOT_SERVING while the store or NATS
	// is unreachable: right for readiness, but a liveness or startup probe
	// on it restarts every replica during an outage of either.
	for _, pc := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"livenessProbe", ctr.LivenessProbe}, {"startupProbe", ctr.StartupProbe}} {
		if pc.probe == nil || pc.probe.GRPC == nil {
			continue // a missing liveness probe is reported above
		}
		if got := ptrString(pc.probe.GRPC.Service); got != processHealth {
			r.failf(path, "%s: %s checks gRPC health service %q, which follows the store and NATS: an outage of either would restart every replica; want service %q (SERVING while the process runs)", where, pc.kind, got, processHealth)
		}
	}
	checkServiceTargets(r, path, c, name, map[int32]string{grpcPort: "GRPC_ADDR"}, ports)
}

type intOrName struct {
	num  int32
	name string
}

func intOrNameOf(n int32, s string) intOrName { return intOrName{n, s} }

// checkServiceTargets: the Service of a workload exists and forwards to each
// listen port.
func checkServiceTargets(r *report, path string, c *cluster, name string, want map[int32]string, ports map[string]int32) {
	svc, ok := c.services[name]
	if !ok {
		r.failf(path, "no Service %q for Deployment %s", name, name)
		return
	}
	for port, key := range want {
		if port == 0 {
			continue
		}
		found := false
		for _, sp := range svc.Spec.Ports {
			target := sp.TargetPort.IntVal
			if sp.TargetPort.StrVal != "" {
				target = ports[sp.TargetPort.StrVal]
			} else if target == 0 {
				target = sp.Port
			}
			if target == port {
				found = true
			}
		}
		if !found {
			r.failf(path, "Service %s does not forward to the %s port %d", name, key, port)
		}
	}
}

func checkPodSecurity(r *report, path, where string, pod corev1.PodSpec, ctr corev1.Container) {
	nonRoot := false
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil {
		nonRoot = *pod.SecurityContext.RunAsNonRoot
	}
	sc := ctr.SecurityContext
	if sc != nil && sc.RunAsNonRoot != nil {
		nonRoot = *sc.RunAsNonRoot
	}
	if !nonRoot {
		r.failf(path, "%s: runAsNonRoot must be true", where)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		r.failf(path, "%s: readOnlyRootFilesystem must be true", where)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		r.failf(path, "%s: allowPrivilegeEscalation must be false", where)
	}
}

func checkResources(r *report, path, where string, res corev1.ResourceRequirements) {
	for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := res.Requests[rn]
		lim, hasLim := res.Limits[rn]
		if !hasReq {
			r.failf(path, "%s: resources.requests.%s is not set", where, rn)
		}
		if !hasLim {
			r.failf(path, "%s: resources.limits.%s is not set", where, rn)
		}
		if hasReq && hasLim && lessThan(lim, req) {
			r.failf(path, "%s: limits.%s (%s) is below requests.%s (%s)", where, rn, lim.String(), rn, req.String())
		}
	}
}

// checkPreStop: a terminating pod leaves the Service's endpoints at the
// moment it gets SIGTERM, but kube-proxy and ingress controllers learn it a
// moment later. A binary that closes its listener on SIGTERM refuses the
// connections of that moment (a 502 on a POST through the ingress), so
// every container waits a few seconds in preStop first, and the grace
// period covers that wait and the binary's own SHUTDOWN_TIMEOUT.
func checkPreStop(r *report, path, where string, pod corev1.PodSpec, ctr corev1.Container) {
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil {
		r.failf(path, "%s: no preStop sleep: the listener closes on SIGTERM while the Service and ingress still send it connections", where)
		return
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if need := ctr.Lifecycle.PreStop.Sleep.Seconds + defaultShutdownSeconds; grace < need {
		r.failf(path, "%s: terminationGracePeriodSeconds %d is shorter than the preStop sleep (%ds) and the shutdown timeout (%ds)", where, grace, ctr.Lifecycle.PreStop.Sleep.Seconds, defaultShutdownSeconds)
	}
}

func lessThan(a, b resource.Quantity) bool { return a.Cmp(b) < 0 }

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// resolveEnv computes a container's environment from envFrom and env,
// reporting references to ConfigMaps, Secrets or keys that do not exist.
func resolveEnv(r *report, path, where string, c *cluster, ctr corev1.Container) map[string]string {
	env := map[string]string{}
	for _, ef := range ctr.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := c.configMaps[ef.ConfigMapRef.Name]
			if !ok {
				if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
					r.failf(path, "%s: envFrom ConfigMap %q does not exist", where, ef.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			s, ok := c.secrets[ef.SecretRef.Name]
			if !ok {
				if ef.SecretRef.Optional == nil || !*ef.SecretRef.Optional {
					r.failf(path, "%s: envFrom Secret %q does not exist", where, ef.SecretRef.Name)
				}
				continue
			}
			for k := range s.StringData {
				env[ef.Prefix+k] = fromRef
			}
			for k := range s.Data {
				env[ef.Prefix+k] = fromRef
			}
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
			continue
		}
		env[e.Name] = fromRef
		switch {
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := c.configMaps[ref.Name]
			if !ok {
				r.failf(path, "%s: env %s: ConfigMap %q does not exist", where, e.Name, ref.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				r.failf(path, "%s: env %s: ConfigMap %q has no key %q", where, e.Name, ref.Name, ref.Key)
			} else {
				env[e.Name] = cm.Data[ref.Key]
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := c.secrets[ref.Name]
			if !ok {
				r.failf(path, "%s: env %s: Secret %q does not exist", where, e.Name, ref.Name)
			} else if !secretHasKey(s, ref.Key) {
				r.failf(path, "%s: env %s: Secret %q has no key %q", where, e.Name, ref.Name, ref.Key)
			}
		}
	}
	return env
}

// checkNATS: the StatefulSet runs JetStream on a persistent volume and the
// nats Service exposes the client port the services dial.
func checkNATS(r *report, path string, c *cluster) {
	ss, ok := c.statefulSets["nats"]
	if !ok {
		r.failf(path, "no StatefulSet \"nats\"")
		return
	}
	if len(ss.Spec.Template.Spec.Containers) == 0 {
		r.failf(path, "StatefulSet nats: no container")
		return
	}
	ctr := ss.Spec.Template.Spec.Containers[0]
	r.truth.checkNATSImage(r, path, "StatefulSet nats container "+ctr.Name, ctr.Image)
	args := append(append([]string{}, ctr.Command...), ctr.Args...)
	if !slices.Contains(args, "-js") && !slices.Contains(args, "--js") && !slices.Contains(args, "--jetstream") {
		r.failf(path, "StatefulSet nats: JetStream is not enabled (-js)")
	}
	storeDir := flagValue(args, "-sd")
	if storeDir == "" {
		storeDir = flagValue(args, "--store_dir")
	}
	if storeDir == "" {
		r.failf(path, "StatefulSet nats: no JetStream store dir (-sd)")
	} else {
		mounted := false
		for _, vm := range ctr.VolumeMounts {
			if vm.MountPath == storeDir {
				for _, vct := range ss.Spec.VolumeClaimTemplates {
					if vct.Name == vm.Name {
						mounted = true
					}
				}
			}
		}
		if !mounted {
			r.failf(path, "StatefulSet nats: store dir %s is not on a volumeClaimTemplate", storeDir)
		}
	}
	if _, ok := c.services[ss.Spec.ServiceName]; !ok {
		r.failf(path, "StatefulSet nats: serviceName %q has no Service", ss.Spec.ServiceName)
	}
	checkPodSecurity(r, path, "StatefulSet nats container "+ctr.Name, ss.Spec.Template.Spec, ctr)
	checkResources(r, path, "StatefulSet nats container "+ctr.Name, ctr.Resources)

	checkNATSAuth(r, path, c, ss, ctr)
}

// checkK8sAddrTargets checks MENU_ADDR and friends in the cluster: a client
// dialing a ClusterIP Service keeps one HTTP/2 connection to whichever pod
// kube-proxy chose, so every call of that client goes to one replica. Each
// must be dns:///<Service>:<port> naming a headless Service (clusterIP:
// None) of the target's pods, whose name resolves to every ready pod; the
// client dials the pods directly, so the port is theirs (GRPC_ADDR).
func checkK8sAddrTargets(r *report, path, where string, c *cluster, env map[string]string) {
	for _, k := range sortedKeys(addrEnv) {
		target := addrEnv[k]
		v, ok := env[k]
		if !ok || v == "" || v == fromRef {
			continue
		}
		name, ok := strings.CutPrefix(v, "dns:///")
		if !ok {
			r.failf(path, "%s: %s=%q: want dns:///<headless Service>:<port>, so that the client balances over every %s pod (through a ClusterIP Service its one connection stays on one pod)", where, k, v, target)
			continue
		}
		host, port, err := net.SplitHostPort(name)
		if err != nil {
			r.failf(path, "%s: %s=%q is not dns:///<Service>:<port>", where, k, v)
			continue
		}
		svc, ok := c.services[host]
		if !ok {
			r.failf(path, "%s: %s=%q: no Service %q", where, k, v, host)
			continue
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			r.failf(path, "%s: %s=%q: Service %s is not headless (clusterIP: None): its name resolves to one virtual IP and the client's one connection stays on one %s pod", where, k, v, host, target)
		}
		d, ok := c.deployments[target]
		if !ok {
			continue // reported with the Deployments
		}
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			r.failf(path, "%s: %s=%q: Service %s does not select the %s pods", where, k, v, host, target)
		}
		if want := podGRPCPort(c, d); want != 0 && port != fmt.Sprint(want) {
			r.failf(path, "%s: %s=%q but %s listens for gRPC on port %d (a headless Service forwards nothing: the client dials the pod)", where, k, v, target, want)
		}
	}
}

// podGRPCPort is the port of a Deployment's GRPC_ADDR, or 0 when unknown.
func podGRPCPort(c *cluster, d *appsv1.Deployment) uint32 {
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return 0
	}
	// Problems of its environment are reported with the Deployment itself.
	env := resolveEnv(newReport(io.Discard, ""), "", "", c, d.Spec.Template.Spec.Containers[0])
	port, _ := portOf(env["GRPC_ADDR"])
	return port
}
