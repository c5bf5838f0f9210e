// Package deliveryapi serves the delivery board and the counter over gRPC.
package deliveryapi

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/auth"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
)

// Stream is the JetStream stream the delivery service owns.
var Stream = jetstream.StreamConfig{
	Name:        "DELIVERY",
	Description: "Delivery changes (pizzashop.delivery.v1.DeliveryStatusChanged)",
	Subjects:    []string{"delivery.>"},
	MaxAge:      30 * 24 * time.Hour,
}

// Policy says who may call each method: couriers and the counter.
var Policy = auth.Policy{
	deliveryv1.DeliveryService_ListDeliveries_FullMethodName:   auth.Only(auth.RoleCourier, auth.RoleAdmin),
	deliveryv1.DeliveryService_GetDelivery_FullMethodName:      auth.Only(auth.RoleCourier, auth.RoleAdmin, auth.RoleService),
	deliveryv1.DeliveryService_DispatchDelivery_FullMethodName: auth.Only(auth.RoleCourier),
	deliveryv1.DeliveryService_DeliverDelivery_FullMethodName:  auth.Only(auth.RoleCourier),
	deliveryv1.DeliveryService_PickupDelivery_FullMethodName:   auth.Only(auth.RoleCourier),
	deliveryv1.DeliveryService_WatchDeliveries_FullMethodName:  auth.Only(auth.RoleCourier, auth.RoleAdmin),
}
