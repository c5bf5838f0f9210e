package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/e2e/stack"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// The tests in this file run the shop in its production shape: two
// processes of every service and NATS as a cluster of three, streams on all
// three nodes.

// TestReplicas proves that live views work whichever replica a client is
// connected to, and that losing one replica of any service or one NATS node
// while orders flow loses nothing.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the shop with two replicas of every service and kills them")
	}
	s := stack.Start(t, stack.WithReplicas(2))
	t.Run("live views on every replica", func(t *testing.T) { testLiveViewsOnEveryReplica(t, s.For(t)) })
	t.Run("estimates count the whole queue", func(t *testing.T) { testEstimatesOnReplicas(t, s.For(t)) })
	t.Run("chaos", func(t *testing.T) { testChaos(t, s.For(t)) })
}

// testEstimatesOnReplicas checks that a kitchen replica's estimate counts
// every ticket ahead, whichever replica queued it or moved it on: four
// tickets are queued, two of them are baked and readied through the
// replica that did not queue them, and the next ticket must count the two
// left (bake time 8 minutes, 2 ovens: now + 8m × (1 + ahead ÷ 2), whole
// rounds, as a free oven takes the next ticket at once).
func testEstimatesOnReplicas(t *testing.T, s *stack.Stack) {
	const bake, ovens = 8 * time.Minute, 2
	customer := s.Token("customer", uniq("queue"))
	kitchen := s.Token("kitchen", "kim")
	var ids []string
	defer func() {
		// Out of the queue again, for the tests after this one.
		for _, id := range ids {
			s.Do(http.MethodPost, "/v1/kitchen/tickets/"+id+":reject", kitchen, map[string]any{"reason": "test over"})
		}
	}()
	replicas := s.Replicas("kitchen")
	taken := func() (n []float64) {
		for _, name := range replicas {
			n = append(n, workDone(t, s, name)["kitchen-placed-orders"])
		}
		return n
	}
	queue := func(ahead int) {
		t.Helper()
		o := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))
		ids = append(ids, o.GetId())
		tk := waitTicket(t, s, o.GetId(), kitchenv1.TicketStatus_TICKET_STATUS_QUEUED, 10*time.Second)
		want := bake * time.Duration(1+ahead/ovens)
		got := tk.GetEstimatedReadyTime().AsTime().Sub(o.GetCreateTime().AsTime())
		if got < want-time.Minute || got > want+time.Minute {
			t.Errorf("ticket %s with %d ahead is estimated ready %s after its order, want %s", o.GetId(), ahead, got.Round(time.Second), want)
		}
	}

	before := taken()
	for ahead := range 4 {
		queue(ahead)
	}
	// The replica that queued fewer of them moves two on.
	after := taken()
	other := 0
	if after[1]-before[1] < after[0]-before[0] {
		other = 1
	}
	client := kitchenv1.NewKitchenServiceClient(grpcConn(t, s.GRPCAddr(replicas[other])))
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer "+kitchen)
	for _, id := range ids[:2] {
		if _, err := client.StartTicket(ctx, &kitchenv1.StartTicketRequest{Id: id}); err != nil {
			t.Fatalf("%s StartTicket(%s): %v", replicas[other], id, err)
		}
		if _, err := client.ReadyTicket(ctx, &kitchenv1.ReadyTicketRequest{Id: id}); err != nil {
			t.Fatalf("%s ReadyTicket(%s): %v", replicas[other], id, err)
		}
	}
	// Handed over at the counter, so that no test after this one finds them.
	courier := s.Token("courier", "cody")
	for _, id := range ids[:2] {
		eventually(t, 10*time.Second, "delivery "+id+" waiting", func() (bool, string) {
			code, raw, _ := s.Do(http.MethodPost, "/v1/delivery/deliveries/"+id+":pickup", courier, map[string]any{})
			return code == http.StatusOK, fmt.Sprintf("POST :pickup = %d %s", code, raw)
		})
	}
	ids = ids[2:]
	queue(2)
	t.Logf("tickets queued by %v: %v before, %v after; two moved on by %s", replicas, before, taken(), replicas[other])
}

// testLiveViewsOnEveryReplica opens the kitchen display, the delivery board
// and a customer's order stream on each replica directly, then moves one
// order with calls to one replica and the next step with calls to the
// other: every stream on every replica sees every step.
func testLiveViewsOnEveryReplica(t *testing.T, s *stack.Stack) {
	kitchenTok, courierTok := s.Token("kitchen", "kim"), s.Token("courier", "cody")
	customer := s.Token("customer", uniq("live"))
	authed := func(tok string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	conn := func(name string) *grpc.ClientConn { return grpcConn(t, s.GRPCAddr(name)) }

	type seen struct {
		name string
		ch   <-chan string // "id status" of every change
	}
	var displays, boards, follows []seen
	for _, name := range s.Replicas("kitchen") {
		stream, err := kitchenv1.NewKitchenServiceClient(conn(name)).WatchTickets(authed(kitchenTok), &kitchenv1.WatchTicketsRequest{})
		if err != nil {
			t.Fatalf("%s WatchTickets: %v", name, err)
		}
		ch := lines(stream.Recv, func(m *kitchenv1.WatchTicketsResponse) []string {
			if t := m.GetTicket(); t != nil {
				return []string{t.GetId() + " " + t.GetStatus().String()}
			}
			if m.GetSnapshotComplete() {
				return []string{"snapshot complete"}
			}
			return nil
		})
		displays = append(displays, seen{name, ch})
	}
	for _, name := range s.Replicas("delivery") {
		stream, err := deliveryv1.NewDeliveryServiceClient(conn(name)).WatchDeliveries(authed(courierTok), &deliveryv1.WatchDeliveriesRequest{})
		if err != nil {
			t.Fatalf("%s WatchDeliveries: %v", name, err)
		}
		ch := lines(stream.Recv, func(m *deliveryv1.WatchDeliveriesResponse) []string {
			if d := m.GetDelivery(); d != nil {
				return []string{d.GetId() + " " + d.GetStatus().String()}
			}
			if m.GetSnapshotComplete() {
				return []string{"snapshot complete"}
			}
			return nil
		})
		boards = append(boards, seen{name, ch})
	}
	for _, v := range append(slices.Clone(displays), boards...) {
		waitLine(t, v.ch, v.name, "snapshot complete")
	}

	o := place(t, s, customer, pickupBody("margherita", "SIZE_SMALL"))
	id := o.GetId()
	for _, name := range s.Replicas("order") {
		stream, err := orderv1.NewOrderServiceClient(conn(name)).WatchOrder(authed(customer), &orderv1.WatchOrderRequest{Id: id})
		if err != nil {
			t.Fatalf("%s WatchOrder: %v", name, err)
		}
		// Every step the order's history holds, then where it is: with two
		// order replicas a step can be applied after a later one, and then
		// it shows in the history of the next update instead of as an
		// update of its own.
		ch := lines(stream.Recv, func(m *orderv1.WatchOrderResponse) []string {
			o := m.GetOrder()
			if o == nil {
				return nil
			}
			var out []string
			for _, c := range o.GetHistory() {
				out = append(out, o.GetId()+" "+c.GetStatus().String())
			}
			return append(out, o.GetId()+" "+o.GetStatus().String())
		})
		follows = append(follows, seen{name, ch})
	}

	kitchens := s.Replicas("kitchen")
	deliveries := s.Replicas("delivery")
	for _, v := range displays {
		waitLine(t, v.ch, v.name, id+" TICKET_STATUS_QUEUED")
	}
	// Each step through a different replica than the one before.
	if _, err := kitchenv1.NewKitchenServiceClient(conn(kitchens[0])).StartTicket(authed(kitchenTok), &kitchenv1.StartTicketRequest{Id: id}); err != nil {
		t.Fatalf("%s StartTicket: %v", kitchens[0], err)
	}
	for _, v := range displays {
		waitLine(t, v.ch, v.name, id+" TICKET_STATUS_BAKING")
	}
	if _, err := kitchenv1.NewKitchenServiceClient(conn(kitchens[1])).ReadyTicket(authed(kitchenTok), &kitchenv1.ReadyTicketRequest{Id: id}); err != nil {
		t.Fatalf("%s ReadyTicket: %v", kitchens[1], err)
	}
	for _, v := range displays {
		waitLine(t, v.ch, v.name, id+" TICKET_STATUS_READY")
	}
	for _, v := range boards {
		waitLine(t, v.ch, v.name, id+" DELIVERY_STATUS_WAITING")
	}
	if _, err := deliveryv1.NewDeliveryServiceClient(conn(deliveries[1])).PickupDelivery(authed(courierTok), &deliveryv1.PickupDeliveryRequest{Id: id}); err != nil {
		t.Fatalf("%s PickupDelivery: %v", deliveries[1], err)
	}
	for _, v := range boards {
		waitLine(t, v.ch, v.name, id+" DELIVERY_STATUS_PICKED_UP")
	}
	for _, v := range follows {
		var want []string
		for _, st := range []string{"ACCEPTED", "BAKING", "READY", "PICKED_UP"} {
			want = append(want, id+" ORDER_STATUS_"+st)
		}
		waitLines(t, v.ch, v.name, want...)
	}
}

// waitLines reads ch until it has shown every one of want, in any order,
// failing after 15 s or when the stream ends.
func waitLines(t *testing.T, ch <-chan string, name string, want ...string) {
	t.Helper()
	left := map[string]bool{}
	for _, w := range want {
		left[w] = true
	}
	deadline := time.After(15 * time.Second)
	var got []string
	for len(left) > 0 {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the live stream ended before it showed %q; it showed %q", name, slices.Sorted(maps.Keys(left)), got)
			}
			delete(left, l)
			got = append(got, l)
		case <-deadline:
			t.Fatalf("%s: no %q on its live stream within 15s; it showed %q", name, slices.Sorted(maps.Keys(left)), got)
		}
	}
}

// waitLine reads ch until want, failing after 15 s or when the stream ends.
func waitLine(t *testing.T, ch <-chan string, name, want string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	var got []string
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the live stream ended before %q; it showed %q", name, want, got)
			}
			if l == want {
				return
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("%s: no %q on its live stream within 15s; it showed %q", name, want, got)
		}
	}
}

// Chaos schedule: orders at a steady rate; after a warm-up each victim is
// killed with SIGKILL, started again after chaosDown, and the shop given
// chaosSettle before the next.
const (
	chaosRate    = 6 // orders per second
	chaosWarmup  = 4 * time.Second
	chaosDown    = 3 * time.Second
	chaosSettle  = 3 * time.Second
	chaosDrain   = 90 * time.Second
	chaosRetries = 60 // attempts of one call, 250 ms apart
)

// chaosOrder is what the test knows of one order it placed.
type chaosOrder struct {
	id       string
	token    string
	delivery bool
	placed   time.Time
	queued   time.Time // first seen on the kitchen display
	done     time.Time // handed over
}

// chaosRun is the state the workers share.
type chaosRun struct {
	s   *stack.Stack
	ctx context.Context

	kitchen, courier string

	mu      sync.Mutex
	orders  map[string]*chaosOrder
	queued  map[string]bool
	waiting map[string]bool
	errors  []string

	retried atomic.Int64 // calls repeated after a 5xx or a broken connection
	calls   atomic.Int64
	streams atomic.Int64 // live streams (re)opened

	toBake, toHand chan string
}

func (r *chaosRun) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errors) < 20 {
		r.errors = append(r.errors, fmt.Sprintf(format, args...))
	}
}

// call sends one request until it gets an answer that is not a 5xx or a
// transport failure, as a client would retry, and returns the status and
// body. Its Idempotency-Key (for orders) makes the retry safe.
func (r *chaosRun) call(method, path, token string, body any, headers ...string) (int, []byte) {
	for attempt := range chaosRetries {
		if attempt > 0 {
			r.retried.Add(1)
			select {
			case <-r.ctx.Done():
				return 0, nil
			case <-time.After(250 * time.Millisecond):
			}
		}
		r.calls.Add(1)
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		resp, err := r.s.Client().Do(r.s.Request(ctx, method, path, token, body, headers...))
		if err != nil {
			cancel()
			continue
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode >= 500 {
			continue
		}
		if attempt > 0 && resp.StatusCode == http.StatusConflict {
			// An earlier attempt went through before its answer was lost.
			return http.StatusOK, raw
		}
		return resp.StatusCode, raw
	}
	return 0, nil
}

// follow keeps a live stream open, reopening it when it ends (the replica
// serving it died), and hands every line to each.
func (r *chaosRun) follow(path, token string, each func(watchLine)) {
	for r.ctx.Err() == nil {
		r.streams.Add(1)
		resp, err := r.s.Client().Do(r.s.Request(r.ctx, http.MethodGet, path, token, nil))
		if err == nil && resp.StatusCode == http.StatusOK {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var l watchLine
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					each(l)
				}
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *chaosRun) place(token string, n int) {
	delivery := n%2 == 0
	body := pickupBody("margherita", "SIZE_SMALL")
	if delivery {
		body = deliveryBody("funghi", "SIZE_MEDIUM", "basil")
	}
	placed := time.Now()
	code, raw := r.call(http.MethodPost, "/v1/orders", token, body, "Idempotency-Key", uniq("chaos"))
	if code != http.StatusOK {
		if r.ctx.Err() == nil {
			r.fail("POST /v1/orders = %d %s", code, raw)
		}
		return
	}
	var o orderv1.Order
	if err := unmarshal.Unmarshal(raw, &o); err != nil {
		r.fail("POST /v1/orders answered %s: %v", raw, err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.orders[o.GetId()] != nil {
		r.errors = append(r.errors, "two placements answered with one order "+o.GetId())
		return
	}
	r.orders[o.GetId()] = &chaosOrder{id: o.GetId(), token: token, delivery: delivery, placed: placed}
}

// ours returns the order of this test with id, waiting a while for the
// POST that placed it to return: a display may show an order before its
// placement's answer arrives. It returns nil for an order of another test
// (a ticket an earlier test rejected can still show as queued, for a
// moment, on a kitchen replica that has not applied the rejection yet).
func (r *chaosRun) ours(id string) *chaosOrder {
	for range 40 {
		r.mu.Lock()
		o := r.orders[id]
		r.mu.Unlock()
		if o != nil || r.ctx.Err() != nil {
			return o
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// bake starts and readies tickets as the kitchen staff would.
func (r *chaosRun) bake() {
	for id := range r.toBake {
		if r.ours(id) == nil {
			continue // not an order of this test
		}
		for _, step := range []string{":start", ":ready"} {
			if code, raw := r.call(http.MethodPost, "/v1/kitchen/tickets/"+id+step, r.kitchen, map[string]any{}); code != http.StatusOK {
				if r.ctx.Err() == nil {
					r.fail("POST ticket %s%s = %d %s", id, step, code, raw)
				}
				break
			}
		}
	}
}

// hand over deliveries and pickups as couriers and the counter would.
func (r *chaosRun) hand() {
	for id := range r.toHand {
		o := r.ours(id)
		if o == nil {
			continue // not an order of this test
		}
		steps := []string{":pickup"}
		if o.delivery {
			steps = []string{":dispatch", ":deliver"}
		}
		ok := true
		for _, step := range steps {
			if code, raw := r.call(http.MethodPost, "/v1/delivery/deliveries/"+id+step, r.courier, map[string]any{}); code != http.StatusOK {
				if r.ctx.Err() == nil {
					r.fail("POST delivery %s%s = %d %s", id, step, code, raw)
				}
				ok = false
				break
			}
		}
		if ok {
			r.mu.Lock()
			o.done = time.Now()
			r.mu.Unlock()
		}
	}
}

// chaosKill is one victim: a service process or a NATS node.
type chaosKill struct {
	victim   string
	at, back time.Time
	// The slowest order placed from chaosSettle before the kill until the
	// victim was back: to the kitchen display, and to its handover.
	display, handover time.Duration
}

func testChaos(t *testing.T, s *stack.Stack) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &chaosRun{
		s: s, ctx: ctx,
		kitchen: s.Token("kitchen", "kim"), courier: s.Token("courier", "cody"),
		orders: map[string]*chaosOrder{}, queued: map[string]bool{}, waiting: map[string]bool{},
		toBake: make(chan string, 4096), toHand: make(chan string, 4096),
	}
	// The streams feed the workers: they stop first, then the workers.
	var streams, workers sync.WaitGroup
	defer func() {
		cancel()
		streams.Wait()
		close(r.toBake)
		close(r.toHand)
		workers.Wait()
	}()

	// The kitchen display and the delivery board drive the staff, as in the
	// shop: whatever replica serves them, and after a reconnect.
	streams.Go(func() {
		r.follow("/v1/kitchen/tickets:watch", r.kitchen, func(l watchLine) {
			id, _ := l.Result.Ticket["id"].(string)
			if id == "" || l.Result.Ticket["status"] != "TICKET_STATUS_QUEUED" {
				return
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if o := r.orders[id]; o != nil && o.queued.IsZero() {
				o.queued = time.Now()
			}
			if !r.queued[id] {
				r.queued[id] = true
				r.toBake <- id
			}
		})
	})
	streams.Go(func() {
		r.follow("/v1/delivery/deliveries:watch", r.courier, func(l watchLine) {
			id, _ := l.Result.Delivery["id"].(string)
			if id == "" || l.Result.Delivery["status"] != "DELIVERY_STATUS_WAITING" {
				return
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if !r.waiting[id] {
				r.waiting[id] = true
				r.toHand <- id
			}
		})
	})
	for range 4 {
		workers.Go(r.bake)
		workers.Go(r.hand)
	}

	customers := []string{s.Token("customer", uniq("chaos")), s.Token("customer", uniq("chaos")), s.Token("customer", uniq("chaos"))}
	stopPlacing := make(chan struct{})
	var placing sync.WaitGroup
	placing.Go(func() {
		tick := time.NewTicker(time.Second / chaosRate)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stopPlacing:
				return
			case <-tick.C:
			}
			placing.Go(func() { r.place(customers[n%len(customers)], n) })
		}
	})

	// Work share before a process dies: its counters die with it.
	shares := map[string]map[string]float64{}
	addShare := func(name string) {
		for k, v := range workDone(t, s, name) {
			if shares[name] == nil {
				shares[name] = map[string]float64{}
			}
			shares[name][k] += v
		}
	}

	time.Sleep(chaosWarmup)
	var kills []*chaosKill
	for _, victim := range []string{"menu", "order-2", "kitchen", "delivery-2"} {
		addShare(victim)
		k := &chaosKill{victim: victim, at: time.Now()}
		s.Kill(victim)
		time.Sleep(chaosDown)
		s.StartService(victim)
		k.back = time.Now()
		kills = append(kills, k)
		time.Sleep(chaosSettle)
	}
	// The NATS node leading the ORDER stream: its leader must move.
	node := orderStreamLeader(t, s)
	k := &chaosKill{victim: s.NATSCluster().NodeName(node) + " (ORDER leader)", at: time.Now()}
	s.StopNATSNode(node)
	time.Sleep(chaosDown)
	s.StartNATSNode(node)
	k.back = time.Now()
	kills = append(kills, k)
	time.Sleep(chaosSettle)
	close(stopPlacing)
	placing.Wait()

	// Drain: every accepted order handed over.
	deadline := time.Now().Add(chaosDrain)
	for {
		r.mu.Lock()
		pending := 0
		for _, o := range r.orders {
			if o.done.IsZero() {
				pending++
			}
		}
		total := len(r.orders)
		r.mu.Unlock()
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d accepted orders not handed over %s after the last kill", pending, total, chaosDrain)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, name := range serviceProcesses(s) {
		addShare(name)
	}
	cancel()

	r.mu.Lock()
	orders := slices.Collect(func(yield func(*chaosOrder) bool) {
		for _, o := range r.orders {
			if !yield(o) {
				return
			}
		}
	})
	errs := slices.Clone(r.errors)
	r.mu.Unlock()
	for _, e := range errs {
		t.Errorf("during the chaos: %s", e)
	}
	if len(orders) < 100 {
		t.Fatalf("only %d orders were accepted; the test proves little", len(orders))
	}
	checkChaosOrders(t, s, orders)

	// Recovery: the slowest order around each kill (placed from
	// chaosSettle before it until the victim was back), to the kitchen
	// display and to its handover, against the same before any kill.
	var display, handover []time.Duration
	for _, o := range orders {
		if !o.done.IsZero() && o.placed.Before(kills[0].at.Add(-chaosSettle)) {
			display = append(display, o.queued.Sub(o.placed))
			handover = append(handover, o.done.Sub(o.placed))
		}
	}
	for _, k := range kills {
		for _, o := range orders {
			if o.done.IsZero() || o.placed.Before(k.at.Add(-chaosSettle)) || !o.placed.Before(k.back) {
				continue
			}
			k.display = max(k.display, o.queued.Sub(o.placed))
			k.handover = max(k.handover, o.done.Sub(o.placed))
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "%d orders accepted at %d/s; %d of %d calls retried by the client; live streams opened %d times\n",
		len(orders), chaosRate, r.retried.Load(), r.calls.Load(), r.streams.Load())
	fmt.Fprintf(&report, "before the kills, order to display p50 %s max %s, to handover p50 %s max %s\n",
		percentile(display, 50), percentile(display, 100), percentile(handover, 50), percentile(handover, 100))
	fmt.Fprintf(&report, "%-28s %-12s %-18s %s\n", "killed (-9)", "back after", "to display (max)", "to handover (max)")
	for _, k := range kills {
		fmt.Fprintf(&report, "%-28s %-12s %-18s %s\n", k.victim, k.back.Sub(k.at).Round(10*time.Millisecond), k.display.Round(10*time.Millisecond), k.handover.Round(10*time.Millisecond))
	}
	fmt.Fprintf(&report, "work share per process, summed over its restarts (events handled per consumer; gRPC calls served):\n")
	for _, svc := range []string{"menu", "order", "kitchen", "delivery"} {
		consumers := map[string]bool{}
		for _, p := range s.Replicas(svc) {
			for c := range shares[p] {
				consumers[c] = true
			}
		}
		for _, c := range slices.Sorted(func(yield func(string) bool) {
			for c := range consumers {
				if !yield(c) {
					return
				}
			}
		}) {
			var parts []string
			var total float64
			for _, p := range s.Replicas(svc) {
				total += shares[p][c]
			}
			for _, p := range s.Replicas(svc) {
				n := shares[p][c]
				parts = append(parts, fmt.Sprintf("%s %.0f (%.0f%%)", p, n, 100*n/max(total, 1)))
				if strings.HasPrefix(c, "grpc ") {
					continue
				}
				if n == 0 && total >= 20 {
					t.Errorf("consumer %s: %s handled none of %.0f events; both replicas should take work", c, p, total)
				}
			}
			fmt.Fprintf(&report, "  %-34s %s\n", c, strings.Join(parts, ", "))
		}
	}
	t.Logf("chaos with 2 replicas of every service and 3 NATS nodes:\n%s", report.String())
}

// checkChaosOrders wants every order handed over once, with a complete
// history, and nothing dead-lettered.
func checkChaosOrders(t *testing.T, s *stack.Stack, orders []*chaosOrder) {
	t.Helper()
	counts := func(stream, filter string) map[string]uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := s.JS().Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			t.Fatalf("stream %s info for %s: %v", stream, filter, err)
		}
		return info.State.Subjects
	}
	queued := counts("KITCHEN", "kitchen.queued.>")
	waiting := counts("DELIVERY", "delivery.waiting.>")
	delivered := counts("DELIVERY", "delivery.delivered.>")
	pickedUp := counts("DELIVERY", "delivery.picked_up.>")
	bad := 0
	for _, o := range orders {
		problem := ""
		switch {
		case queued["kitchen.queued."+o.id] != 1:
			problem = fmt.Sprintf("%d kitchen.queued events, want 1", queued["kitchen.queued."+o.id])
		case waiting["delivery.waiting."+o.id] != 1:
			problem = fmt.Sprintf("%d delivery.waiting events, want 1", waiting["delivery.waiting."+o.id])
		case o.delivery && (delivered["delivery.delivered."+o.id] != 1 || pickedUp["delivery.picked_up."+o.id] != 0):
			problem = "a delivery not delivered exactly once"
		case !o.delivery && (pickedUp["delivery.picked_up."+o.id] != 1 || delivered["delivery.delivered."+o.id] != 0):
			problem = "a pickup not picked up exactly once"
		}
		if problem == "" {
			want := "PLACED,ACCEPTED,BAKING,READY,PICKED_UP"
			final := orderv1.OrderStatus_ORDER_STATUS_PICKED_UP
			if o.delivery {
				want = "PLACED,ACCEPTED,BAKING,READY,OUT_FOR_DELIVERY,DELIVERED"
				final = orderv1.OrderStatus_ORDER_STATUS_DELIVERED
			}
			got := waitStatus(t, s, o.token, o.id, final, 30*time.Second)
			if h := strings.Join(history(got), ","); h != want {
				problem = "history " + h + ", want " + want
			}
		}
		if problem != "" {
			bad++
			if bad <= 10 {
				t.Errorf("order %s: %s", o.id, problem)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d orders in all with a problem", bad)
	}
	// No twins: each customer has exactly the orders the test was answered.
	perCustomer := map[string]int{}
	for _, o := range orders {
		perCustomer[o.token]++
	}
	for tok, n := range perCustomer {
		if got := len(listAll(t, s, tok, 100)); got != n {
			t.Errorf("a customer has %d orders in the store, was answered %d", got, n)
		}
	}
	if n := countOn(t, s, "DEADLETTER", "deadletter.>"); n != 0 {
		t.Errorf("%d dead letters after the chaos, want 0", n)
	}
}

// orderStreamLeader is the index of the NATS node leading the ORDER stream.
func orderStreamLeader(t *testing.T, s *stack.Stack) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS().Stream(ctx, "ORDER")
	if err != nil {
		t.Fatalf("stream ORDER: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream ORDER info: %v (cluster %v)", err, info)
	}
	for i := range 3 {
		if s.NATSCluster().NodeName(i) == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("ORDER is led by %q, none of the nodes", info.Cluster.Leader)
	return 0
}

func serviceProcesses(s *stack.Stack) []string {
	var names []string
	for _, svc := range []string{"menu", "order", "kitchen", "delivery"} {
		names = append(names, s.Replicas(svc)...)
	}
	return names
}

// workDone reads a process's /metrics: events handled per consumer (the
// count of pizzashop_events_handle_duration_seconds) and gRPC calls served
// ("grpc " + method).
func workDone(t *testing.T, s *stack.Stack, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.MetricsAddr(name) + "/metrics")
	if err != nil {
		t.Logf("metrics of %s: %v", name, err)
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var key string
		switch {
		case strings.HasPrefix(line, "pizzashop_events_handle_duration_seconds_count{"):
			key = label(line, "consumer")
		case strings.HasPrefix(line, "rpc_server_call_duration_seconds_count{") && !strings.Contains(line, "grpc.health"):
			key = "grpc " + label(line, "rpc_method")
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil && key != "" && key != "grpc " {
			out[key] += v
		}
	}
	return out
}

// label is one label's value in a Prometheus text line.
func label(line, name string) string {
	_, rest, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// percentile of ds (0 to 100), or 0 without any.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s) - 1) * p / 100
	return s[i].Round(time.Millisecond)
}

// lines turns a stream into the lines line makes of each message, on a
// channel closed when the stream ends.
func lines[M any](recv func() (M, error), line func(M) []string) <-chan string {
	ch := make(chan string, 256)
	go func() {
		defer close(ch)
		for {
			m, err := recv()
			if err != nil {
				return
			}
			for _, l := range line(m) {
				ch <- l
			}
		}
	}()
	return ch
}
