package main

import (
	"net"
	"strconv"
)

// The runtime contract of the Go binaries, as the deploy files must honour it.

// grpcServices are the four gRPC services (GRPC_ADDR, METRICS_ADDR, Mongo, NATS).
var grpcServices = []string{"menu", "order", "kitchen", "delivery"}

// goBinaries are the five images built from deploy/docker/service.Dockerfile.
var goBinaries = append(append([]string{}, grpcServices...), "gateway")

// requiredComposeServices must all exist in docker-compose.yml.
var requiredComposeServices = []string{
	"mongo", "nats", "menu", "order", "kitchen", "delivery", "gateway",
	"otel-collector", "jaeger", "prometheus", "grafana",
}

// publishedPorts are the only container ports published to the host, by service.
var publishedPorts = map[string]uint32{
	"gateway":    8080,
	"jaeger":     16686,
	"prometheus": 9090,
	"grafana":    3000,
}

// requiredEnv lists the environment variables a binary reads at startup.
func requiredEnv(binary string) []string {
	if binary == "gateway" {
		return []string{
			"HTTP_ADDR", "MENU_ADDR", "ORDER_ADDR", "KITCHEN_ADDR", "DELIVERY_ADDR",
			"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "LOG_LEVEL", "AUTH_SECRET",
		}
	}
	env := []string{
		"GRPC_ADDR", "METRICS_ADDR", "MONGO_URI", "MONGO_DATABASE", "NATS_URL",
		"AUTH_SECRET", "LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
	}
	if binary == "order" {
		env = append(env, "MENU_ADDR", "KITCHEN_ADDR")
	}
	return env
}

// fixedEnv are values that must be exactly these for a binary.
func fixedEnv(binary string) map[string]string {
	m := map[string]string{"OTEL_SERVICE_NAME": binary}
	if binary != "gateway" {
		m["MONGO_DATABASE"] = "pizzashop_" + binary
	}
	return m
}

// processHealth is pkg/grpcx.ServingHealth: the grpc.health.v1 service that
// answers SERVING for as long as the process takes calls, whatever the state
// of the store and NATS (the overall "" status follows those).
const processHealth = "pizzashop.serving"

// defaultShutdownSeconds is SHUTDOWN_TIMEOUT's default in every binary: how
// long it drains in-flight calls after SIGTERM.
const defaultShutdownSeconds = 10

// minAuthSecretLen is pkg/auth.MinKeyLen: a shorter AUTH_SECRET makes every
// service exit at startup.
const minAuthSecretLen = 16

// addrEnv are the variables holding the host:port of another service's gRPC
// listener, and which service that is.
var addrEnv = map[string]string{
	"MENU_ADDR":     "menu",
	"ORDER_ADDR":    "order",
	"KITCHEN_ADDR":  "kitchen",
	"DELIVERY_ADDR": "delivery",
}

// portOf returns the port of a listen address such as ":9090" or "0.0.0.0:9090".
func portOf(addr string) (uint32, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}
