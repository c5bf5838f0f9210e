package kitchenapi

import "time"

// TicketEvent is the event stored with a ticket's change, for tests that
// change tickets as another replica would.
var TicketEvent = ticketEvent

// SetClock has s tell the time by now. Call it before s serves.
func SetClock(s *Server, now func() time.Time) { s.now = now }
