package grpcx

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// ServingHealth is the health service name a client balancing over replicas
// checks. It answers SERVING for as long as the process takes calls and
// NOT_SERVING from the moment it begins to stop, so a replica that is
// shutting down gets no new calls. It does not follow the store or NATS (the
// overall "" status does): a replica whose store is down still answers
// what it can without it, such as the menu from memory, and with one store
// shared by all replicas there is no healthier one to prefer.
const ServingHealth = "pizzashop.serving"

// Retry policy of the calls a Balanced connection may repeat.
const (
	retryAttempts   = 3
	retryBackoff    = "0.05s"
	retryMaxBackoff = "0.5s"
)

// DialBalanced connects to every replica of one service, given either as a
// comma-separated list of host:port addresses ("127.0.0.1:9092,127.0.0.1:9102";
// one address is a list of one), or as a DNS target "dns:///name:port" whose
// name resolves to one address per replica, such as a Kubernetes headless
// Service (clusterIP: None). Calls go round robin to the replicas whose
// ServingHealth answers SERVING. A call is repeated on another replica only
// when that is safe:
//   - any call that never left this process (gRPC's transparent retry: the
//     connection failed before the request was written);
//   - a call to one of safe, methods that change nothing (reads), named
//     "package.Service/Method" or "package.Service" for all of its methods,
//     when it fails with Unavailable, up to 3 attempts with backoff.
//
// Nothing else is retried: a write that may have reached a replica is left to
// the caller, who knows whether it is idempotent.
//
// A DNS target is resolved by grpc-go's dns resolver, which looks the name up
// again only when a connection to one of its addresses fails or closes, and
// at most once every 30 seconds (dns.SetMinResolutionInterval): a replica
// that stops is skipped at once (its health turns NOT_SERVING, then its
// connection fails), and one that starts is found at the next look-up after
// a connection closes; servers close every connection after
// maxConnectionAge, so that happens within minutes even when no replica
// stops. A name behind a virtual IP (a ClusterIP Service) resolves to one
// address: every call then goes down one connection to whichever replica
// the proxy chose, and there is nothing to balance over.
func DialBalanced(addrs string, safe []string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	sc, err := balancedServiceConfig(safe)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(addrs, dnsScheme+":") {
		target, err := parseDNSTarget(addrs)
		if err != nil {
			return nil, err
		}
		// The service config is ours: the resolver's (DNS TXT records) is
		// neither looked up nor used.
		opts = append([]grpc.DialOption{grpc.WithDefaultServiceConfig(sc), grpc.WithDisableServiceConfig()}, opts...)
		return Dial(target, opts...)
	}
	list, err := ParseAddrs(addrs)
	if err != nil {
		return nil, err
	}
	r := manual.NewBuilderWithScheme(nextScheme())
	state := resolver.State{}
	for _, a := range list {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	opts = append([]grpc.DialOption{grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(sc)}, opts...)
	conn, err := Dial(r.Scheme()+":///"+strings.ReplaceAll(addrs, ",", "_"), opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc dial %s: %w", addrs, err)
	}
	return conn, nil
}

const dnsScheme = "dns"

// parseDNSTarget checks a DNS target of DialBalanced: "dns:///name:port", or
// "dns://server:port/name:port" to ask that DNS server. The port is
// required (grpc-go would otherwise dial 443), and a target names one name.
func parseDNSTarget(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != dnsScheme || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("DNS target %q: want dns:///name:port", target)
	}
	name := strings.TrimPrefix(u.Path, "/")
	host, port, err := net.SplitHostPort(name)
	if err != nil || host == "" || port == "" || strings.ContainsAny(name, ",/") {
		return "", fmt.Errorf("DNS target %q: %q is not name:port (one name, with its port)", target, name)
	}
	return target, nil
}

// ParseAddrs splits a comma-separated list of host:port addresses, refusing
// an empty list, an empty entry, a repeated one or one without a port.
func ParseAddrs(addrs string) ([]string, error) {
	if strings.TrimSpace(addrs) == "" {
		return nil, fmt.Errorf("address list is empty, want host:port[,host:port...]")
	}
	var list []string
	for a := range strings.SplitSeq(addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("address list %q has an empty entry", addrs)
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("address list %q: %q is not host:port", addrs, a)
		}
		for _, b := range list {
			if a == b {
				return nil, fmt.Errorf("address list %q names %s twice", addrs, a)
			}
		}
		list = append(list, a)
	}
	return list, nil
}

// schemes numbers the resolver of every balanced connection: each
// connection has its own, holding its own addresses.
var schemes atomic.Int64

func nextScheme() string { return fmt.Sprintf("pizzashop-replicas-%d", schemes.Add(1)) }

type methodName struct {
	Service string `json:"service"`
	Method  string `json:"method,omitempty"`
}

func balancedServiceConfig(safe []string) (string, error) {
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []methodName `json:"name"`
		RetryPolicy retryPolicy  `json:"retryPolicy"`
	}
	cfg := map[string]any{
		"loadBalancingConfig": []map[string]any{{"round_robin": map[string]any{}}},
		"healthCheckConfig":   map[string]string{"serviceName": ServingHealth},
	}
	if len(safe) > 0 {
		mc := methodConfig{RetryPolicy: retryPolicy{
			MaxAttempts: retryAttempts, InitialBackoff: retryBackoff, MaxBackoff: retryMaxBackoff,
			BackoffMultiplier: 2, RetryableStatusCodes: []string{"UNAVAILABLE"},
		}}
		for _, m := range safe {
			svc, method, _ := strings.Cut(strings.TrimPrefix(m, "/"), "/")
			if svc == "" || strings.Contains(method, "/") {
				return "", fmt.Errorf("retryable method %q: want package.Service/Method or package.Service", m)
			}
			mc.Name = append(mc.Name, methodName{Service: svc, Method: method})
		}
		cfg["methodConfig"] = []methodConfig{mc}
	}
	b, err := json.Marshal(cfg)
	return string(b), err
}
