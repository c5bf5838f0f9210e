package menuapi

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/outbox"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"github.com/pizzashop/pizzashop/services/menu/internal/menu"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// SubjectChanged is where every menu change is published.
const SubjectChanged = "menu.changed"

// Stream is the JetStream stream the menu service owns.
var Stream = jetstream.StreamConfig{
	Name:        "MENU",
	Description: "Menu changes (pizzashop.menu.v1.MenuChanged)",
	Subjects:    []string{"menu.>"},
	MaxAge:      30 * 24 * time.Hour,
}

// changedEvent encodes the event for a stored change of it.
func changedEvent(ctx context.Context, kind menu.Kind, created bool, it menu.Item, version int64) (outbox.Entry, error) {
	ev := &menuv1.MenuChanged{
		EventId:     outbox.NewID(),
		OccurTime:   timestamppb.New(it.UpdateTime),
		MenuVersion: version,
	}
	switch {
	case kind == menu.KindPizza && created:
		ev.ChangeType = menuv1.MenuChangeType_MENU_CHANGE_TYPE_PIZZA_CREATED
	case kind == menu.KindPizza:
		ev.ChangeType = menuv1.MenuChangeType_MENU_CHANGE_TYPE_PIZZA_UPDATED
	case created:
		ev.ChangeType = menuv1.MenuChangeType_MENU_CHANGE_TYPE_TOPPING_CREATED
	default:
		ev.ChangeType = menuv1.MenuChangeType_MENU_CHANGE_TYPE_TOPPING_UPDATED
	}
	if kind == menu.KindPizza {
		ev.Item = &menuv1.MenuChanged_Pizza{Pizza: pizzaToProto(it)}
	} else {
		ev.Item = &menuv1.MenuChanged_Topping{Topping: toppingToProto(it)}
	}
	return outbox.NewEntry(ctx, SubjectChanged, ev.EventId, ev)
}
