package natsx

// WorkerOf exposes workerOf to the tests.
var WorkerOf = workerOf
