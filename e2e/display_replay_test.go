package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/e2e/stack"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDisplayIgnoresEventsPublishedAgain: after a crash the outbox relay
// publishes again the events it cannot prove JetStream holds, so a kitchen
// display that opens afterwards may get an old event of a ticket that has
// long moved on. Neither the display nor the kitchen's queue of open
// tickets, which later displays open from, may show a READY ticket as
// QUEUED again.
func TestDisplayIgnoresEventsPublishedAgain(t *testing.T) {
	stack.Parallel(t)
	s := stack.Start(t)
	kitchen := s.Token("kitchen", "kim")
	customer := s.Token("customer", uniq("again"))

	first := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL")).GetId()
	waitTicket(t, s, first, kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, eventWait)
	post(t, s, "/v1/kitchen/tickets/"+first+":start", kitchen, http.StatusOK)
	post(t, s, "/v1/kitchen/tickets/"+first+":ready", kitchen, http.StatusOK)
	// Crash the kitchen once its relay's mark says the ticket's events are
	// in JetStream (so the restart publishes none of them again itself): its
	// memory of the closed ticket goes with it, and a display opened after
	// has only the store to tell an old event by.
	db := s.Mongo("kitchen")
	eventually(t, 10*time.Second, "the kitchen's outbox mark passes ticket "+first, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var doc struct {
			At time.Time `bson:"outbox_at"`
		}
		var marks []struct {
			Upto time.Time `bson:"upto"`
		}
		if err := db.Collection("tickets").FindOne(ctx, bson.D{{Key: "_id", Value: first}}).Decode(&doc); err != nil {
			return false, "ticket document: " + err.Error()
		}
		cur, err := db.Collection("outbox_marks").Find(ctx, bson.D{})
		if err == nil {
			err = cur.All(ctx, &marks)
		}
		for _, m := range marks {
			if !m.Upto.After(doc.At) {
				return false, fmt.Sprintf("mark %v, ticket written at %v", m.Upto, doc.At)
			}
		}
		return err == nil && len(marks) > 0, fmt.Sprintf("%d marks, err %v", len(marks), err)
	})
	for _, k := range s.Replicas("kitchen") {
		s.Kill(k)
		s.StartService(k)
	}
	// The QUEUED event exactly as the relay published it.
	queued := lastOn(t, s, "KITCHEN", "kitchen.queued."+first)

	display := watch(t, s, "/v1/kitchen/tickets:watch", kitchen)
	expect(t, display, 10*time.Second, "kitchen display opens with a complete snapshot", func(l watchLine) bool {
		if l.Result.Ticket["id"] == first {
			t.Fatalf("the snapshot holds ticket %s as %v, but it is READY", first, l.Result.Ticket["status"])
		}
		return l.Result.SnapshotComplete
	})

	// Published again on core NATS, not JetStream: what a relay does after
	// a crash, and what plain subscribers such as the display get.
	if err := s.NC().Publish(queued.Subject, queued.Data); err != nil {
		t.Fatalf("publish %s again: %v", queued.Subject, err)
	}
	if err := s.NC().FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}

	// A new order after the repeat: the display's next ticket must be it.
	second := place(t, s, customer, pickupBody("funghi", "SIZE_SMALL")).GetId()
	l := expect(t, display, eventWait, "a ticket change on the display", func(l watchLine) bool { return l.Result.Ticket != nil })
	if got := l.Result.Ticket; got["id"] != second || got["status"] != "TICKET_STATUS_QUEUED" {
		t.Fatalf("the display's next change is ticket %v %v, want the second order's %s TICKET_STATUS_QUEUED: "+
			"an event published again showed the READY ticket %s as it was before", got["id"], got["status"], second, first)
	}
	// Nor may the kitchen's own queue, which the repeat reached too, hold
	// the ticket as open again: a display opened now takes its snapshot
	// from that queue.
	later := watch(t, s, "/v1/kitchen/tickets:watch", kitchen)
	expect(t, later, 10*time.Second, "a display opened after the repeat gets a complete snapshot", func(l watchLine) bool {
		if l.Result.Ticket["id"] == first {
			t.Fatalf("a display opened after the repeat holds ticket %s as %v, but it is READY", first, l.Result.Ticket["status"])
		}
		return l.Result.SnapshotComplete
	})
}
