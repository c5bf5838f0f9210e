#!/usr/bin/env bash
# The README's walk-through ("Try it"), exactly as printed there: register a
# customer, order a pizza and follow it to the door, order another and pick
# it up at the counter, cancel a third, change the menu. Run it from the
# repository root against a freshly started shop, with curl and jq:
#
#   make run                  # in another terminal (make clean-data first for a fresh shop)
#   scripts/walkthrough.sh
#
# A shop started with moved ports is reached with the same variable that
# moved it (PIZZASHOP_HTTP_ADDR=127.0.0.1:18080 scripts/walkthrough.sh).
# e2e/walkthrough_test.go checks that the part between the markers is the
# README's code block, byte for byte, and runs this script against a shop
# started by `pizzashop run`.
set -euo pipefail
# A step that fails stops the script; say which, and the likeliest cause.
trap 'echo "walkthrough: the step at line $LINENO failed. It needs a fresh shop that is running (it registers alice@example.com and adds Bianca): stop the shop, make clean-data, make run." >&2' ERR

# --- README walk-through begins
GW=http://${PIZZASHOP_HTTP_ADDR:-localhost:8080}   # where `make run` serves the REST API

# The menu (anyone). Send the ETag back to get 304 while it is unchanged.
curl -s $GW/v1/menu | jq -r '.pizzas[] | "\(.id)\t\(.name)"'
ETAG=$(curl -s -D - -o /dev/null $GW/v1/menu | tr -d '\r' | awk 'tolower($1) == "etag:" {print $2}')
curl -s -o /dev/null -w '%{http_code}\n' -H "If-None-Match: $ETAG" $GW/v1/menu   # 304

# Register as a customer: the answer carries Alice's own token, used from
# here on. (Back later? POST /v1/customers:signIn with email and password.)
CUSTOMER=$(curl -s $GW/v1/customers -d '{"name":"Alice","email":"alice@example.com",
  "phone":"+1 555 0100","password":"correct horse battery"}' | jq -er .token)
# Staff credentials are minted locally (roles: kitchen, courier, admin).
KITCHEN=$(bin/pizzashop token --role kitchen --sub kim)
COURIER=$(bin/pizzashop token --role courier --sub cody)
ADMIN=$(bin/pizzashop token --role admin --sub ada)

# Order one pizza for delivery. The price comes from the server; the
# Idempotency-Key makes a retry return the same order instead of a second one.
ID=$(curl -s $GW/v1/orders -H "Authorization: Bearer $CUSTOMER" \
  -H 'Idempotency-Key: walkthrough-delivery-1' -d '{
    "item": {"pizzaId": "margherita", "size": "SIZE_LARGE", "toppingIds": ["mushrooms", "basil"]},
    "fulfillment": "FULFILLMENT_DELIVERY",
    "deliveryAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345"},
    "paymentMethod": "PAYMENT_METHOD_CASH"}' | jq -er .id)
echo "order $ID"
curl -s -H "Authorization: Bearer $CUSTOMER" $GW/v1/orders | jq -c '.orders[] | {id, status}'   # newest first
# Follow it live in another terminal:
#   curl -N -H "Authorization: Bearer $CUSTOMER" $GW/v1/orders/$ID:watch

# status prints where an order is; until waits for the events to get there.
status() { curl -s -H "Authorization: Bearer $CUSTOMER" $GW/v1/orders/$1 | jq -r .status; }
until [ "$(status $ID)" = ORDER_STATUS_ACCEPTED ]; do sleep 0.2; done   # the kitchen has the ticket

# The kitchen bakes it; the courier takes it out and delivers it.
curl -s -H "Authorization: Bearer $KITCHEN" $GW/v1/kitchen/tickets | jq -c '.tickets[] | {id, status}'
curl -s -X POST -H "Authorization: Bearer $KITCHEN" $GW/v1/kitchen/tickets/$ID:start -d '{}' | jq -r .status
curl -s -X POST -H "Authorization: Bearer $KITCHEN" $GW/v1/kitchen/tickets/$ID:ready -d '{}' | jq -r .status
until curl -sf -o /dev/null -H "Authorization: Bearer $COURIER" $GW/v1/delivery/deliveries/$ID; do sleep 0.2; done
curl -s -X POST -H "Authorization: Bearer $COURIER" $GW/v1/delivery/deliveries/$ID:dispatch -d '{}' | jq -r .status
curl -s -X POST -H "Authorization: Bearer $COURIER" $GW/v1/delivery/deliveries/$ID:deliver -d '{}' | jq -r .status
until [ "$(status $ID)" = ORDER_STATUS_DELIVERED ]; do sleep 0.2; done
echo "order $ID: $(status $ID)"

# A second order, for pickup at the counter.
PICKUP=$(curl -s $GW/v1/orders -H "Authorization: Bearer $CUSTOMER" \
  -H 'Idempotency-Key: walkthrough-pickup-1' -d '{
    "item": {"pizzaId": "funghi", "size": "SIZE_SMALL"},
    "fulfillment": "FULFILLMENT_PICKUP", "paymentMethod": "PAYMENT_METHOD_CASH"}' | jq -er .id)
until [ "$(status $PICKUP)" = ORDER_STATUS_ACCEPTED ]; do sleep 0.2; done
curl -s -X POST -H "Authorization: Bearer $KITCHEN" $GW/v1/kitchen/tickets/$PICKUP:start -d '{}' | jq -r .status
curl -s -X POST -H "Authorization: Bearer $KITCHEN" $GW/v1/kitchen/tickets/$PICKUP:ready -d '{}' | jq -r .status
until curl -sf -o /dev/null -H "Authorization: Bearer $COURIER" $GW/v1/delivery/deliveries/$PICKUP; do sleep 0.2; done
curl -s -X POST -H "Authorization: Bearer $COURIER" $GW/v1/delivery/deliveries/$PICKUP:pickup -d '{}' | jq -r .status
until [ "$(status $PICKUP)" = ORDER_STATUS_PICKED_UP ]; do sleep 0.2; done
echo "order $PICKUP: $(status $PICKUP)"

# A third order, cancelled before the kitchen starts it.
CANCEL=$(curl -s $GW/v1/orders -H "Authorization: Bearer $CUSTOMER" \
  -H 'Idempotency-Key: walkthrough-cancel-1' -d '{
    "item": {"pizzaId": "diavola", "size": "SIZE_MEDIUM"},
    "fulfillment": "FULFILLMENT_PICKUP", "paymentMethod": "PAYMENT_METHOD_CASH"}' | jq -er .id)
curl -s -X POST -H "Authorization: Bearer $CUSTOMER" $GW/v1/orders/$CANCEL:cancel -d '{}' | jq -r .status

# Manage the menu: add a pizza, mark a topping sold out.
curl -s -H "Authorization: Bearer $ADMIN" $GW/v1/menu/pizzas -d '{
  "name": "Bianca", "description": "Mozzarella, ricotta, garlic", "available": true,
  "prices": [{"size": "SIZE_SMALL", "amountMinor": 950},
             {"size": "SIZE_MEDIUM", "amountMinor": 1250},
             {"size": "SIZE_LARGE", "amountMinor": 1550}]}' | jq -er .id
curl -s -X PATCH -H "Authorization: Bearer $ADMIN" $GW/v1/menu/toppings/burrata -d '{"available": false}' | jq -c '{id, available}'
# --- README walk-through ends
