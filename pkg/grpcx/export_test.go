package grpcx

import "time"

// SetMaxConnectionAge sets maxConnectionAge for the servers a test creates
// after it, until restore is called.
func SetMaxConnectionAge(d time.Duration) (restore func()) {
	old := maxConnectionAge
	maxConnectionAge = d
	return func() { maxConnectionAge = old }
}
