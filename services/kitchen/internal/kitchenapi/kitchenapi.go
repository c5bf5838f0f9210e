// Package kitchenapi serves the kitchen over gRPC.
package kitchenapi

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
)

// Stream is the JetStream stream the kitchen service owns.
var Stream = jetstream.StreamConfig{
	Name:        "KITCHEN",
	Description: "Kitchen ticket changes (pizzashop.kitchen.v1.TicketStatusChanged)",
	Subjects:    []string{"kitchen.>"},
	MaxAge:      30 * 24 * time.Hour,
}

// Policy says who may call each method: kitchen staff work the tickets, the
// order service cancels them.
var Policy = auth.Policy{
	kitchenv1.KitchenService_ListTickets_FullMethodName:  auth.Only(auth.RoleKitchen, auth.RoleAdmin),
	kitchenv1.KitchenService_GetTicket_FullMethodName:    auth.Only(auth.RoleKitchen, auth.RoleAdmin, auth.RoleService),
	kitchenv1.KitchenService_StartTicket_FullMethodName:  auth.Only(auth.RoleKitchen),
	kitchenv1.KitchenService_ReadyTicket_FullMethodName:  auth.Only(auth.RoleKitchen),
	kitchenv1.KitchenService_RejectTicket_FullMethodName: auth.Only(auth.RoleKitchen),
	kitchenv1.KitchenService_CancelTicket_FullMethodName: auth.Only(auth.RoleService),
	kitchenv1.KitchenService_WatchTickets_FullMethodName: auth.Only(auth.RoleKitchen, auth.RoleAdmin),
}
