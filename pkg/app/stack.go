package app

import "strconv"

// The ports of the local stack, as `pizzashop run` lays it out and the load
// generator finds it: service N (from 1: menu, order, kitchen, delivery)
// serves gRPC on base+N and /metrics on base+100+N, replica R (from 1) of
// it on base+10(R-1)+N and base+100+10(R-1)+N.

// MaxReplicas is the most replicas of every service the local stack runs:
// it keeps replica ports below base+100 (gRPC) and base+200 (metrics).
const MaxReplicas = 9

// GRPCPort is where replica r (from 1) of service n (from 1) serves gRPC.
func GRPCPort(base, n, r int) int { return base + 10*(r-1) + n }

// MetricsPort is where replica r (from 1) of service n (from 1) serves
// /metrics.
func MetricsPort(base, n, r int) int { return base + 100 + 10*(r-1) + n }

// ProcessName names replica r of service when replicas of it run: the
// service's own name when it runs once, name-R otherwise.
func ProcessName(service string, r, replicas int) string {
	if replicas == 1 {
		return service
	}
	return service + "-" + strconv.Itoa(r)
}
