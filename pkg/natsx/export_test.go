package natsx

import (
	"testing"
	"time"
)

// WorkerOf exposes workerOf to the tests.
var WorkerOf = workerOf

// SetFloorSample sets how often the server's ack floor is read, until the
// test ends; call it before starting consumers.
func SetFloorSample(t *testing.T, d time.Duration) {
	old := floorSample
	floorSample = d
	t.Cleanup(func() { floorSample = old })
}

// SetRetryNote sets how often a retry that goes on is logged again, until
// the test ends.
func SetRetryNote(t *testing.T, d time.Duration) {
	old := retryNote
	retryNote = d
	t.Cleanup(func() { retryNote = old })
}
