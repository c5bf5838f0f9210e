package main

import (
	"fmt"
	"strings"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc"
)

// safeToRetry are the upstream methods that change nothing: a call of one
// that fails Unavailable on one replica is repeated on another. Writes are
// never repeated by the gateway: a client that retries an order sends its
// Idempotency-Key, and the order service makes the retry return the same
// order. Live streams are repeated only before their first message.
var safeToRetry = []string{
	menuv1.MenuService_GetMenu_FullMethodName,
	menuv1.MenuService_PriceOrder_FullMethodName,
	orderv1.OrderService_GetOrder_FullMethodName,
	orderv1.OrderService_ListOrders_FullMethodName,
	orderv1.OrderService_WatchOrder_FullMethodName,
	orderv1.CustomerService_GetCurrentCustomer_FullMethodName,
	kitchenv1.KitchenService_ListTickets_FullMethodName,
	kitchenv1.KitchenService_GetTicket_FullMethodName,
	kitchenv1.KitchenService_WatchTickets_FullMethodName,
	deliveryv1.DeliveryService_ListDeliveries_FullMethodName,
	deliveryv1.DeliveryService_GetDelivery_FullMethodName,
	deliveryv1.DeliveryService_WatchDeliveries_FullMethodName,
}

// dialUpstreams connects to every replica of each service; addrs maps a
// service to its comma-separated replica addresses (MENU_ADDR=a,b). Calls
// are spread round robin over the replicas that are serving.
func dialUpstreams(addrs map[string]string) (map[string]*grpc.ClientConn, error) {
	conns := make(map[string]*grpc.ClientConn, len(addrs))
	for name, list := range addrs {
		c, err := grpcx.DialBalanced(list, safeToRetry)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("%s_ADDR: %w", strings.ToUpper(name), err)
		}
		conns[name] = c
	}
	return conns, nil
}
