// Package order holds the ordering rules: what a valid order is, its
// lifecycle, and which changes are allowed. It knows nothing of gRPC, Mongo
// or NATS.
package order

import "fmt"

// Status is where an order is in its lifecycle. The numbers match the API.
type Status int

// The statuses.
const (
	StatusPlaced         Status = 1
	StatusAccepted       Status = 2
	StatusBaking         Status = 3
	StatusReady          Status = 4
	StatusOutForDelivery Status = 5
	StatusDelivered      Status = 6
	StatusPickedUp       Status = 7
	StatusRejected       Status = 8
	StatusCancelled      Status = 9
)

var statusNames = map[Status]string{
	StatusPlaced: "PLACED", StatusAccepted: "ACCEPTED", StatusBaking: "BAKING", StatusReady: "READY",
	StatusOutForDelivery: "OUT_FOR_DELIVERY", StatusDelivered: "DELIVERED", StatusPickedUp: "PICKED_UP",
	StatusRejected: "REJECTED", StatusCancelled: "CANCELLED",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("STATUS(%d)", int(s))
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool { _, ok := statusNames[s]; return ok }

// Final reports whether nothing can happen to an order in s any more.
func (s Status) Final() bool {
	switch s {
	case StatusDelivered, StatusPickedUp, StatusRejected, StatusCancelled:
		return true
	}
	return false
}

// next is the lifecycle: the statuses each status may move to directly.
//
//	PLACED ──► ACCEPTED ──► BAKING ──► READY ──► OUT_FOR_DELIVERY ──► DELIVERED
//	  │           │                      └──────► PICKED_UP
//	  │           └──► REJECTED
//	  └───────────┴──► CANCELLED
var next = map[Status][]Status{
	StatusPlaced:         {StatusAccepted, StatusCancelled, StatusRejected},
	StatusAccepted:       {StatusBaking, StatusRejected, StatusCancelled},
	StatusBaking:         {StatusReady},
	StatusReady:          {StatusOutForDelivery, StatusPickedUp},
	StatusOutForDelivery: {StatusDelivered},
}

// Reachable reports whether an order in from can ever get to to, in one or
// more steps. A status is not reachable from itself. Events that would move
// an order to a status it cannot reach are stale or out of order.
func Reachable(from, to Status) bool {
	for _, n := range next[from] {
		if n == to || Reachable(n, to) {
			return true
		}
	}
	return false
}
