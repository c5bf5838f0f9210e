package main

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// NATS in the cluster: the server requires a user and password, which come
// from a Secret; the services connect with a NATS_URL that carries them and
// comes from a Secret too (a ConfigMap is readable by whoever may read the
// namespace's configuration); a NetworkPolicy lets only the shop's pods
// reach the server. Without them any pod in the cluster could publish
// forged order events.

const natsClientPort = 4222

// envSource says where a container's variable comes from: "Secret",
// "ConfigMap", "value", "field" or "" when unset, and for a Secret or
// ConfigMap its name and key. env entries override envFrom.
func envSource(ctr corev1.Container, c *cluster, name string) (kind, obj, key string) {
	for _, ef := range ctr.EnvFrom {
		k := strings.TrimPrefix(name, ef.Prefix)
		if ef.Prefix != "" && !strings.HasPrefix(name, ef.Prefix) {
			continue
		}
		switch {
		case ef.ConfigMapRef != nil:
			if cm, ok := c.configMaps[ef.ConfigMapRef.Name]; ok {
				if _, ok := cm.Data[k]; ok {
					kind, obj, key = "ConfigMap", cm.Name, k
				}
			}
		case ef.SecretRef != nil:
			if s, ok := c.secrets[ef.SecretRef.Name]; ok && secretHasKey(s, k) {
				kind, obj, key = "Secret", s.Name, k
			}
		}
	}
	for _, e := range ctr.Env {
		if e.Name != name {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			kind, obj, key = "value", "", ""
		case e.ValueFrom.SecretKeyRef != nil:
			kind, obj, key = "Secret", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom.ConfigMapKeyRef != nil:
			kind, obj, key = "ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key
		default:
			kind, obj, key = "field", "", ""
		}
	}
	return kind, obj, key
}

// secretRefValue returns the value of a Secret's key as the manifests hold
// it, and whether they do.
func secretRefValue(c *cluster, name, key string) (string, bool) {
	s, ok := c.secrets[name]
	if !ok || !secretHasKey(s, key) {
		return "", false
	}
	return secretValue(s, key), true
}

// natsAuthRe finds the user and password of a nats.conf authorization
// block read from the environment: user: $A, password: $B.
var (
	natsAuthBlockRe = regexp.MustCompile(`(?s)authorization\s*[:=]?\s*\{(.*?)\}`)
	natsUserRe      = regexp.MustCompile(`(?m)^\s*(?:user|username)\s*[:=]\s*(\S+)\s*$`)
	natsPassRe      = regexp.MustCompile(`(?m)^\s*(?:pass|password)\s*[:=]\s*(\S+)\s*$`)
)

// checkNATSAuth checks that the NATS server requires a user and password
// read from a Secret through its environment, and that every service
// connects with a Secret's NATS_URL carrying the same two.
func checkNATSAuth(r *report, file string, c *cluster, ss *appsv1.StatefulSet, ctr corev1.Container) {
	args := append(append([]string{}, ctr.Command...), ctr.Args...)
	for _, f := range []string{"--user", "-user", "--pass", "-pass", "--auth", "-auth"} {
		if slices.Contains(args, f) {
			r.failf(file, "StatefulSet nats: %s on the command line: the monitoring port serves the command line at /debug/vars; set the credentials in the config file from the environment", f)
		}
	}
	user, pass := natsServerCredentials(r, file, c, ss, ctr)
	if why := r.truth.unsafeSecret(pass.value); pass.known && why != "" {
		// Allowed in the file, as the AUTH_SECRET placeholder is: the
		// services refuse it in NATS_URL at start (config.URLSecrets).
		r.note(file, "Secret %s: %s %s; the services refuse to start with it until it is replaced", pass.secret, pass.key, why)
	}

	for _, name := range sortedKeys(c.configMaps) {
		if _, ok := c.configMaps[name].Data["NATS_URL"]; ok {
			r.failf(file, "ConfigMap %s holds NATS_URL: it carries the NATS password; keep it in a Secret", name)
		}
	}
	for _, name := range grpcServices {
		d, ok := c.deployments[name]
		if !ok || len(d.Spec.Template.Spec.Containers) == 0 {
			continue // reported with the Deployments
		}
		dctr := d.Spec.Template.Spec.Containers[0]
		w := fmt.Sprintf("Deployment %s container %s", name, dctr.Name)
		kind, obj, key := envSource(dctr, c, "NATS_URL")
		if kind != "Secret" {
			r.failf(file, "%s: NATS_URL must come from a Secret (it carries the NATS user and password), not %s", w, describeSource(kind, obj))
			continue
		}
		v, ok := secretRefValue(c, obj, key)
		if !ok {
			continue // a missing Secret or key is reported with the environment
		}
		checkNATSURL(r, file, c, w, fmt.Sprintf("Secret %s key %s", obj, key), v, user, pass)
	}
}

func describeSource(kind, obj string) string {
	switch kind {
	case "":
		return "unset"
	case "value":
		return "a plain value"
	case "field":
		return "the downward API"
	}
	return kind + " " + obj
}

// secretCred is a credential the server reads from a Secret: its value when
// the manifests hold it.
type secretCred struct {
	secret, key, value string
	known              bool
}

// natsServerCredentials finds the config file the server reads (-c), checks
// that it requires a user and password taken from environment variables set
// from a Secret, and returns them.
func natsServerCredentials(r *report, file string, c *cluster, ss *appsv1.StatefulSet, ctr corev1.Container) (user, pass secretCred) {
	args := append(append([]string{}, ctr.Command...), ctr.Args...)
	conf := flagValue(args, "-c")
	if conf == "" {
		conf = flagValue(args, "--config")
	}
	noAuth := "StatefulSet nats: the server does not require a user and password of its clients"
	if conf == "" {
		r.failf(file, "%s: no config file (-c) with an authorization block", noAuth)
		return
	}
	text, ok := natsConfigText(c, ss, ctr, conf)
	if !ok {
		r.failf(file, "%s: config file %s is not a key of a mounted ConfigMap", noAuth, conf)
		return
	}
	block := natsAuthBlockRe.FindStringSubmatch(text)
	if block == nil {
		r.failf(file, "%s: %s has no authorization block", noAuth, conf)
		return
	}
	for _, f := range []struct {
		what string
		re   *regexp.Regexp
		out  *secretCred
	}{{"user", natsUserRe, &user}, {"password", natsPassRe, &pass}} {
		m := f.re.FindStringSubmatch(block[1])
		if m == nil {
			r.failf(file, "%s: the authorization block of %s sets no %s", noAuth, conf, f.what)
			continue
		}
		variable, ok := strings.CutPrefix(m[1], "$")
		if !ok {
			r.failf(file, "StatefulSet nats: %s sets the %s in the file (%s); read it from a variable ($NATS_...) set from a Secret", conf, f.what, m[1])
			continue
		}
		kind, obj, key := envSource(ctr, c, variable)
		if kind != "Secret" {
			r.failf(file, "StatefulSet nats: the %s ($%s) must come from a Secret, not %s", f.what, variable, describeSource(kind, obj))
			continue
		}
		v, known := secretRefValue(c, obj, key)
		*f.out = secretCred{secret: obj, key: key, value: v, known: known}
	}
	return user, pass
}

// natsConfigText returns the content of the file at conf in the container,
// from the ConfigMap volume mounted over its directory.
func natsConfigText(c *cluster, ss *appsv1.StatefulSet, ctr corev1.Container, conf string) (string, bool) {
	for _, vm := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(conf, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range ss.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := c.configMaps[v.ConfigMap.Name]
			if !ok {
				return "", false
			}
			key := rel
			for _, it := range v.ConfigMap.Items {
				if path.Clean(it.Path) == path.Clean(rel) {
					key = it.Key
				}
			}
			text, ok := cm.Data[key]
			return text, ok
		}
	}
	return "", false
}

// checkNATSURL checks one service's NATS_URL: every server in it is a
// Service port here (or a name outside the kustomization) and carries the
// server's user and password.
func checkNATSURL(r *report, file string, c *cluster, w, from, natsURL string, user, pass secretCred) {
	for part := range strings.SplitSeq(natsURL, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.Host == "" {
			r.failf(file, "%s: NATS_URL (%s) is not a nats:// URL", w, from)
			continue
		}
		pw, hasPass := "", false
		if u.User != nil {
			pw, hasPass = u.User.Password()
		}
		if u.User == nil || u.User.Username() == "" || !hasPass || pw == "" {
			r.failf(file, "%s: NATS_URL (%s) has no user and password: the server refuses it", w, from)
		} else {
			if user.known && u.User.Username() != user.value {
				r.failf(file, "%s: NATS_URL (%s) signs in as %q, but the server's user is Secret %s key %s", w, from, u.User.Username(), user.secret, user.key)
			}
			if pass.known && pw != pass.value {
				r.failf(file, "%s: NATS_URL (%s) has another password than the server's (Secret %s key %s)", w, from, pass.secret, pass.key)
			}
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, fmt.Sprint(natsClientPort)
		}
		svc, ok := c.services[host]
		if !ok {
			if !strings.Contains(host, ".") {
				r.failf(file, "%s: NATS_URL (%s): no Service %q", w, from, host)
			}
			continue
		}
		found := false
		for _, sp := range svc.Spec.Ports {
			found = found || fmt.Sprint(sp.Port) == port
		}
		if !found {
			r.failf(file, "%s: NATS_URL (%s): Service %s has no port %s", w, from, host, port)
		}
	}
}

// checkNATSNetworkPolicy: some NetworkPolicy limits who reaches the NATS
// pods; every policy that selects them lets in only pods of this namespace
// picked by label (no namespaceSelector, no ipBlock, no rule open to all),
// and the four services still reach the client port.
func checkNATSNetworkPolicy(r *report, file string, c *cluster) {
	ss, ok := c.statefulSets["nats"]
	if !ok {
		return // reported by checkNATS
	}
	natsPods := labels.Set(ss.Spec.Template.Labels)
	ports := map[string]int32{}
	if len(ss.Spec.Template.Spec.Containers) > 0 {
		for _, p := range ss.Spec.Template.Spec.Containers[0].Ports {
			ports[p.Name] = p.ContainerPort
		}
	}
	var policies []*networkingv1.NetworkPolicy
	for _, name := range sortedKeys(c.netpols) {
		np := c.netpols[name]
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(natsPods) {
			continue
		}
		ingress := len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		if !ingress {
			continue
		}
		policies = append(policies, np)
		for i, rule := range np.Spec.Ingress {
			w := fmt.Sprintf("NetworkPolicy %s ingress rule %d", np.Name, i+1)
			if len(rule.From) == 0 {
				r.failf(file, "%s lets every pod in the cluster (and beyond) reach NATS: list the shop's pods in from", w)
			}
			for _, peer := range rule.From {
				switch {
				case peer.IPBlock != nil:
					r.failf(file, "%s lets an ipBlock reach NATS: only the shop's pods may", w)
				case peer.NamespaceSelector != nil:
					r.failf(file, "%s lets pods of other namespaces reach NATS: only the shop's pods may", w)
				case peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0:
					r.failf(file, "%s lets every pod of the namespace reach NATS: select the shop's pods by label", w)
				}
			}
		}
	}
	if len(policies) == 0 {
		r.failf(file, "no NetworkPolicy limits who reaches the nats pods: any pod in the cluster could publish order events")
		return
	}
	// NetworkPolicies add up: a service may connect if any rule lets it.
	for _, name := range grpcServices {
		d, ok := c.deployments[name]
		if !ok {
			continue
		}
		pod := labels.Set(d.Spec.Template.Labels)
		allowed := false
		for _, np := range policies {
			for _, rule := range np.Spec.Ingress {
				if !rulePort(rule.Ports, natsClientPort, ports) {
					continue
				}
				for _, peer := range rule.From {
					if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
						continue
					}
					sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
					allowed = allowed || (err == nil && sel.Matches(pod))
				}
			}
		}
		if !allowed {
			r.failf(file, "no NetworkPolicy lets the %s pods reach the NATS client port %d: %s could not connect", name, natsClientPort, name)
		}
	}
}

// rulePort reports whether a rule's ports admit port (no ports: all).
func rulePort(ps []networkingv1.NetworkPolicyPort, port int32, named map[string]int32) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Port == nil {
			return true
		}
		n := p.Port.IntVal
		if p.Port.StrVal != "" {
			n = named[p.Port.StrVal]
		}
		end := n
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if n <= port && port <= end {
			return true
		}
	}
	return false
}
