package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/natsx"
)

func TestDeadLetters(t *testing.T) {
	url := devstack.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append(args, "--nats", url), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	if out, err := cmd("deadletters", "list"); err != nil || !strings.Contains(out, "no dead letters") {
		t.Fatalf("deadletters list before any stream = %q, %v; want \"no dead letters\"", out, err)
	}

	// A consumer gave up on one message of ORDER.
	for _, cfg := range []jetstream.StreamConfig{{Name: "ORDER", Subjects: []string{"order.>"}}, natsx.DeadLetterStream} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	dl := nats.NewMsg("deadletter.kitchen-placed-orders")
	dl.Data = []byte("payload")
	dl.Header.Set(natsx.HeaderEventType, "pizzashop.order.v1.OrderStatusChanged")
	dl.Header.Set(natsx.HeaderDLSubject, "order.placed.abc")
	dl.Header.Set(natsx.HeaderDLConsumer, "kitchen-placed-orders")
	dl.Header.Set(natsx.HeaderDLDeliveries, "5")
	dl.Header.Set(natsx.HeaderDLError, "store said no")
	dl.Header.Set(natsx.HeaderDLMsgID, "evt-1")
	ack, err := js.PublishMsg(ctx, dl)
	if err != nil {
		t.Fatal(err)
	}

	out, err := cmd("deadletters", "list")
	if err != nil {
		t.Fatalf("deadletters list = %v", err)
	}
	for _, want := range []string{"kitchen-placed-orders", "order.placed.abc", "store said no", "5"} {
		if !strings.Contains(out, want) {
			t.Errorf("deadletters list = %q, want it to show %q", out, want)
		}
	}

	if _, err := cmd("deadletters", "replay"); err == nil {
		t.Error("deadletters replay with neither sequences nor --all = nil error, want a usage error")
	}
	if _, err := cmd("deadletters", "replay", "x1"); err == nil {
		t.Error("deadletters replay x1 = nil error, want a usage error")
	}
	if out, err := cmd("deadletters", "replay", "--all"); err != nil || !strings.Contains(out, "order.placed.abc") {
		t.Fatalf("deadletters replay --all = %q, %v; want it replayed to order.placed.abc", out, err)
	}

	// Back on its original subject, with its own headers and none of ours,
	// and gone from the dead letters.
	st, err := js.Stream(ctx, "ORDER")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "order.placed.abc")
	if err != nil {
		t.Fatalf("replayed message on order.placed.abc: %v", err)
	}
	if string(m.Data) != "payload" || m.Header.Get(natsx.HeaderEventType) == "" || m.Header.Get(natsx.HeaderDLError) != "" {
		t.Errorf("replayed message = %q with headers %v; want the original data and headers only", m.Data, m.Header)
	}
	dls, err := js.Stream(ctx, natsx.DeadLetterStream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dls.GetMsg(ctx, ack.Sequence); err == nil {
		t.Error("the replayed dead letter is still on DEADLETTER, want it removed")
	}
	if out, _ := cmd("deadletters", "list"); !strings.Contains(out, "no dead letters") {
		t.Errorf("deadletters list after replay = %q, want none", out)
	}

	// A letter that cannot be replayed (no subject header) does not keep
	// --all from replaying the ones after it; the command still fails,
	// naming it, and it stays.
	bad := nats.NewMsg("deadletter.kitchen-placed-orders")
	bad.Data = []byte("where from?")
	badAck, err := js.PublishMsg(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	dl.Header.Set(natsx.HeaderDLSubject, "order.placed.def")
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		t.Fatal(err)
	}
	out, err = cmd("deadletters", "replay", "--all")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(badAck.Sequence)) {
		t.Errorf("deadletters replay --all with an unreplayable letter = %v, want an error naming letter %d", err, badAck.Sequence)
	}
	if !strings.Contains(out, "order.placed.def") {
		t.Errorf("deadletters replay --all = %q; want the letter after the bad one replayed to order.placed.def", out)
	}
	if _, err := dls.GetMsg(ctx, badAck.Sequence); err != nil {
		t.Errorf("the unreplayable letter is gone from DEADLETTER (%v), want it kept", err)
	}
}
