// Package e2e holds the shop's end-to-end tests: they run the real services
// as separate processes (package stack) and prove the ordering rules over
// REST through the gateway, over gRPC, and on the event stream.
package e2e
