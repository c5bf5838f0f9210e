package devstack

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestStartPersists writes one stream message and one document, restarts
// the stack on the same directory and reads both back.
func TestStartPersists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts FerretDB twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	begin := time.Now()
	s := mustStart(t, ctx, dir)
	t.Logf("first start: %s", time.Since(begin))

	nc, js := connectJS(t, s.NATSURL())
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "DEVSTACK", Subjects: []string{"devstack.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("CreateOrUpdateStream: %v", err)
	}
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "devstack.hello", Data: []byte("hello")}, jetstream.WithMsgID("evt-1"))
	if err != nil {
		t.Fatalf("PublishMsg: %v", err)
	}
	if ack.Sequence != 1 || ack.Duplicate {
		t.Fatalf("PublishMsg ack = seq %d duplicate %v, want seq 1 duplicate false", ack.Sequence, ack.Duplicate)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("CreateOrUpdateConsumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("DoubleAck: %v", err)
		}
	}
	if len(got) != 1 || got[0] != "hello" {
		t.Fatalf("consumed %q, want [hello]", got)
	}

	mc := connectMongo(t, s.MongoURI())
	coll := mc.Database("devstack").Collection("pizzas")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "margherita"}, {Key: "price", Value: 900}}); err != nil {
		t.Fatalf("InsertOne: %v", err)
	}
	findPizza(t, ctx, coll)

	// Clients go first, as in the launcher: FerretDB waits up to 3 s for
	// connected clients when it stops.
	nc.Close()
	if err := mc.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	begin = time.Now()
	s.Close()
	t.Logf("close: %s", time.Since(begin))

	begin = time.Now()
	s = mustStart(t, ctx, dir)
	t.Logf("second start: %s", time.Since(begin))

	_, js = connectJS(t, s.NATSURL())
	stream, err = js.Stream(ctx, "DEVSTACK")
	if err != nil {
		t.Fatalf("Stream after restart: %v", err)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("GetMsg(1) after restart: %v", err)
	}
	if string(msg.Data) != "hello" || msg.Header.Get(jetstream.MsgIDHeader) != "evt-1" {
		t.Errorf("GetMsg(1) after restart = %q (msg id %q), want hello (evt-1)", msg.Data, msg.Header.Get(jetstream.MsgIDHeader))
	}
	cons, err = stream.Consumer(ctx, "reader")
	if err != nil {
		t.Fatalf("Consumer after restart: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("consumer Info: %v", err)
	}
	if info.AckFloor.Stream != 1 || info.NumPending != 0 {
		t.Errorf("consumer after restart: ack floor %d, pending %d; want 1, 0", info.AckFloor.Stream, info.NumPending)
	}

	coll = connectMongo(t, s.MongoURI()).Database("devstack").Collection("pizzas")
	findPizza(t, ctx, coll)
}

func TestStartAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	begin := time.Now()
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), NATSAddr: l.Addr().String()})
	if err == nil {
		s.Close()
		t.Fatalf("Start with NATS on a busy port succeeded, want an error")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Start with a busy port took %s to fail, want it fast", d)
	}
	t.Logf("error: %v", err)
}

func TestHelpers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts FerretDB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, js := connectJS(t, NATS(t))
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream AccountInfo on NATS(t): %v", err)
	}

	var name string
	t.Run("mongo", func(t *testing.T) {
		_, db := MongoDatabase(t)
		name = db.Name()
		coll := db.Collection("pizzas")
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "margherita"}}); err != nil {
			t.Fatalf("InsertOne: %v", err)
		}
		findPizza(t, ctx, coll)
	})
	// The subtest's cleanup dropped its database.
	names, err := connectMongo(t, Mongo(t)).ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatalf("ListDatabaseNames: %v", err)
	}
	for _, n := range names {
		if n == name {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

func TestDatabase(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	for _, sub := range []string{"simple", "With Spaces/and.dots$", strings.Repeat("very_long_", 10), "ÜñíçØdé"} {
		t.Run(sub, func(t *testing.T) {
			a, b := Database(t), Database(t)
			if !valid.MatchString(a) {
				t.Errorf("Database() = %q, want it to match %s", a, valid)
			}
			if a == b {
				t.Errorf("Database() twice = %q both times, want distinct names", a)
			}
			if !strings.HasPrefix(a, "testdatabase_") {
				t.Errorf("Database() = %q, want it to start with the test name", a)
			}
		})
	}
}

func mustStart(t *testing.T, ctx context.Context, dir string) *Stack {
	t.Helper()
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func connectJS(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("nats.Connect(%s): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return nc, js
}

func connectMongo(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongox.Connect(uri, 4)
	if err != nil {
		t.Fatalf("mongox.Connect(%s): %v", uri, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func findPizza(t *testing.T, ctx context.Context, coll *mongo.Collection) {
	t.Helper()
	var doc struct {
		ID string `bson:"_id"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "margherita"}}).Decode(&doc); err != nil {
		t.Fatalf("FindOne(margherita) in %s: %v", coll.Database().Name(), err)
	}
	if doc.ID != "margherita" {
		t.Fatalf("FindOne(margherita) = %q", doc.ID)
	}
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	natsURL, mongoURI := s.NATSURL(), s.MongoURI()

	client, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	coll := client.Database("restart").Collection("docs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatal(err)
	}

	s.StopMongo()
	s.StopNATS()
	if err := client.Ping(ctx, nil); err == nil {
		t.Error("Ping with the store stopped = nil, want an error")
	}
	if err := s.StartNATS(); err != nil {
		t.Fatalf("StartNATS: %v", err)
	}
	if err := s.StartMongo(); err != nil {
		t.Fatalf("StartMongo: %v", err)
	}
	if s.NATSURL() != natsURL || s.MongoURI() != mongoURI {
		t.Errorf("after restart: %s %s, want the same addresses %s %s", s.NATSURL(), s.MongoURI(), natsURL, mongoURI)
	}
	// The same client reconnects and finds what was stored before.
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "kept"}}).Err(); err != nil {
		t.Errorf("document after the store's restart: %v", err)
	}
}
