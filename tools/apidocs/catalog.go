package main

// The event catalogue's facts that the protos do not hold: which stream
// keeps which event under which subjects, and who consumes them. The
// messages, their fields and the subjects' status words come from the
// protos. TestCatalogMatchesServices checks these tables against the
// streams and consumers the services declare, so neither drifts.

// catalog is everything the AsyncAPI document describes.
type catalog struct {
	Streams       []streamInfo
	Consumers     []consumerInfo
	Subscriptions []subscriptionInfo
}

// streamInfo is one JetStream stream and the one event it keeps.
type streamInfo struct {
	Name     string // JetStream stream name
	Subjects string // its subject filter
	Owner    string // the service that publishes on it
	Purpose  string
	// Channel is the AsyncAPI channel id; Address its subject template.
	Channel string
	Address string
	// Message is the event's protobuf message; empty for DEADLETTER, which
	// keeps copies of the other streams' events.
	Message string
	// StatusEnum fills the {status} parameter: each value of the enum but
	// the zero one, without its prefix, in lower case.
	StatusEnum string
	// IDParam describes the {orderId} parameter, when the address has one.
	IDParam string
}

// consumerInfo is a durable JetStream consumer.
type consumerInfo struct {
	Service string
	Durable string
	Stream  string
	Filter  string
	Does    string
}

// subscriptionInfo is a plain NATS subscription a service holds to feed a
// live stream; it is not durable and misses what is sent while it is down
// (the live stream then starts again from a snapshot).
type subscriptionInfo struct {
	Service string
	Subject string
	Stream  string
	Feeds   string
}

// Consumer settings of pkg/natsx: redelivery is bounded, then the message
// is parked on DEADLETTER.
const (
	maxDeliver   = 5
	retention    = "30 days"
	dupWindow    = "10 minutes"
	orderIDParam = "The order id (also the ticket and delivery id)."
)

var shopCatalog = catalog{
	Streams: []streamInfo{
		{
			Name: "MENU", Subjects: "menu.>", Owner: "menu",
			Purpose: "Every change to the menu: a pizza or topping created or updated (prices, availability).",
			Channel: "menuChanged", Address: "menu.changed",
			Message: "pizzashop.menu.v1.MenuChanged",
		},
		{
			Name: "ORDER", Subjects: "order.>", Owner: "order",
			Purpose: "Every status an order moves to, with the whole order.",
			Channel: "orderStatusChanged", Address: "order.{status}.{orderId}",
			Message: "pizzashop.order.v1.OrderStatusChanged", StatusEnum: "pizzashop.order.v1.OrderStatus",
			IDParam: orderIDParam,
		},
		{
			Name: "KITCHEN", Subjects: "kitchen.>", Owner: "kitchen",
			Purpose: "Every status a kitchen ticket moves to, with the whole ticket.",
			Channel: "ticketStatusChanged", Address: "kitchen.{status}.{orderId}",
			Message: "pizzashop.kitchen.v1.TicketStatusChanged", StatusEnum: "pizzashop.kitchen.v1.TicketStatus",
			IDParam: orderIDParam,
		},
		{
			Name: "DELIVERY", Subjects: "delivery.>", Owner: "delivery",
			Purpose: "Every status a delivery or pickup moves to, with the whole delivery.",
			Channel: "deliveryStatusChanged", Address: "delivery.{status}.{orderId}",
			Message: "pizzashop.delivery.v1.DeliveryStatusChanged", StatusEnum: "pizzashop.delivery.v1.DeliveryStatus",
			IDParam: orderIDParam,
		},
		{
			Name: "DEADLETTER", Subjects: "deadletter.>", Owner: "every consuming service",
			Purpose: "Messages a consumer gave up on, kept with headers saying where they came from and why they failed. `pizzashop deadletters list` shows them and `pizzashop deadletters replay` publishes them again on their original subject.",
			Channel: "deadLetter", Address: "deadletter.{consumer}",
		},
	},
	Consumers: []consumerInfo{
		{Service: "kitchen", Durable: "kitchen-placed-orders", Stream: "ORDER", Filter: "order.placed.*",
			Does: "Queues a kitchen ticket for every placed order and publishes it as accepted (or rejected)."},
		{Service: "delivery", Durable: "delivery-ready-orders", Stream: "ORDER", Filter: "order.ready.*",
			Does: "Opens a delivery (or a pickup at the counter) for every order the kitchen made ready."},
		{Service: "order", Durable: "order-kitchen-events", Stream: "KITCHEN", Filter: "kitchen.*.*",
			Does: "Moves the order along as the kitchen works its ticket: accepted, baking, ready, rejected, with the ready estimate."},
		{Service: "order", Durable: "order-delivery-events", Stream: "DELIVERY", Filter: "delivery.*.*",
			Does: "Moves the order along as it is dispatched, delivered or picked up."},
	},
	Subscriptions: []subscriptionInfo{
		{Service: "order", Subject: "order.*.{orderId}", Stream: "ORDER",
			Feeds: "WatchOrder (GET /v1/orders/{id}:watch): the customer following one order."},
		{Service: "kitchen", Subject: "kitchen.*.*", Stream: "KITCHEN",
			Feeds: "WatchTickets (GET /v1/kitchen/tickets:watch): the kitchen display."},
		{Service: "delivery", Subject: "delivery.*.*", Stream: "DELIVERY",
			Feeds: "WatchDeliveries (GET /v1/delivery/deliveries:watch): the delivery board and the counter."},
	},
}
