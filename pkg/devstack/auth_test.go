package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"golang.org/x/crypto/pbkdf2"
)

// TestSCRAMServerRFC7677 replays the SCRAM-SHA-256 exchange of RFC 7677,
// section 3, against the server side.
func TestSCRAMServerRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	s := deriveSCRAMServer("user", "pencil", salt, 4096, func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" })
	conv, serverFirst, ok := s.start([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if !ok {
		t.Fatal("start refused the RFC's client-first message")
	}
	const wantFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	if string(serverFirst) != wantFirst {
		t.Fatalf("server-first = %q, want %q", serverFirst, wantFirst)
	}
	const clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	serverFinal, ok := s.finish(conv, []byte(clientFinal))
	if !ok {
		t.Fatal("finish refused the RFC's proof")
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(serverFinal) != want {
		t.Fatalf("server-final = %q, want %q", serverFinal, want)
	}

	// One bit off in the proof, or another nonce, and it is refused.
	for _, bad := range []string{
		strings.Replace(clientFinal, "p=d", "p=e", 1),
		strings.Replace(clientFinal, "r=rOpr", "r=xOpr", 1),
		strings.Replace(clientFinal, "c=biws", "c=eSws", 1),
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	} {
		conv, _, _ := s.start([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
		if _, ok := s.finish(conv, []byte(bad)); ok {
			t.Errorf("finish accepted %q", bad)
		}
	}
	for _, bad := range []string{"n,,n=someone,r=abc", "p=tls-unique,,n=user,r=abc", "n,,r=abc", "n=user,r=abc", "n,,n=user,r=abc,m=ext"} {
		if _, _, ok := s.start([]byte(bad)); ok {
			t.Errorf("start accepted %q", bad)
		}
	}
}

// authStack starts a stack that requires credentials.
func authStack(t *testing.T) (*Stack, Credentials) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	creds, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, Options{Dir: dir, Credentials: &creds})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s, creds
}

func TestStoreRequiresCredentials(t *testing.T) {
	s, creds := authStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host := s.mongoAddr
	if u, _ := url.Parse(s.MongoURI()); u.User.Username() != creds.MongoUser || u.Host != host {
		t.Fatalf("MongoURI() = %s, want the store user at %s", u.Redacted(), host)
	}

	// With the right credentials everything works as before.
	good := connectMongo(t, s.MongoURI())
	coll := good.Database("authtest").Collection("pizzas")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "margherita"}, {Key: "price", Value: 900}}); err != nil {
		t.Fatalf("InsertOne with credentials: %v", err)
	}
	findPizza(t, ctx, coll)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "margherita"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "price", Value: 950}}}}); err != nil {
		t.Fatalf("UpdateOne with credentials: %v", err)
	}

	wrongPassword := creds
	wrongPassword.MongoPassword = "not" + creds.MongoPassword
	wrongUser := creds
	wrongUser.MongoUser = "intruder"
	for name, uri := range map[string]string{
		"no credentials": "mongodb://" + host + "/",
		"wrong password": wrongPassword.MongoURI(host),
		"wrong user":     wrongUser.MongoURI(host),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := mongox.Connect(uri, 2, mongox.WithTimeout(5*time.Second))
			if err != nil {
				t.Fatalf("mongox.Connect: %v", err)
			}
			defer func() { _ = c.Disconnect(context.Background()) }()
			coll := c.Database("authtest").Collection("pizzas")
			calls := map[string]func() error{
				"ping": func() error { return c.Ping(ctx, nil) },
				"find": func() error { return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "margherita"}}).Err() },
				"insert": func() error {
					_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "stolen"}})
					return err
				},
				"delete": func() error {
					_, err := coll.DeleteMany(ctx, bson.D{})
					return err
				},
				"listDatabases": func() error {
					_, err := c.ListDatabaseNames(ctx, bson.D{})
					return err
				},
				"drop": func() error { return c.Database("authtest").Drop(ctx) },
			}
			for call, f := range calls {
				err := f()
				if name == "no credentials" {
					var ce mongo.CommandError
					if !errors.As(err, &ce) || ce.Code != 13 || ce.Name != "Unauthorized" {
						t.Errorf("%s without credentials: %v, want error 13 Unauthorized", call, err)
					}
				} else if err == nil || !strings.Contains(err.Error(), "Authentication failed") {
					t.Errorf("%s: %v, want authentication failed", call, err)
				}
			}
		})
	}

	// Nothing the refused clients tried got through.
	n, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Price int }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "margherita"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if n != 1 || got.Price != 950 {
		t.Errorf("after the refused clients: %d documents, price %d; want 1 and 950", n, got.Price)
	}
}

// TestStoreSASLWithoutSkip authenticates over the wire as a client that
// does not ask to skip the last, empty exchange, and checks that commands
// sent before it finished are refused.
func TestStoreSASLWithoutSkip(t *testing.T) {
	s, creds := authStack(t)
	conn, err := net.Dial("tcp", s.mongoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	call := func(cmd bsoncore.Document) bsoncore.Document {
		t.Helper()
		msg := opMsgMessage(0, cmd)
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		reply, err := readMessage(conn, maxMessage)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := binary.LittleEndian.Uint32(reply[8:12]), binary.LittleEndian.Uint32(msg[4:8]); got != want {
			t.Fatalf("reply is to request %d, want %d", got, want)
		}
		d, _, ok := bodyDocument(reply)
		if !ok {
			t.Fatalf("unreadable reply %x", reply)
		}
		return d
	}
	find := bsoncore.NewDocumentBuilder().AppendString("find", "pizzas").AppendString("$db", "authtest").Build()
	if code, _ := call(find).Lookup("code").Int32OK(); code != 13 {
		t.Fatalf("find before authenticating: code %d, want 13", code)
	}

	const clientNonce = "fyko+d2lbbFgONRv9qkxdawL"
	clientFirstBare := "n=" + creds.MongoUser + ",r=" + clientNonce
	start := call(bsoncore.NewDocumentBuilder().AppendInt32("saslStart", 1).AppendString("mechanism", scramMechanism).
		AppendBinary("payload", 0, []byte("n,,"+clientFirstBare)).AppendString("$db", "admin").Build())
	_, serverFirst, ok := start.Lookup("payload").BinaryOK()
	if !ok || !isOK(start) {
		t.Fatalf("saslStart = %s", start)
	}
	attrs := map[string]string{}
	for _, a := range strings.Split(string(serverFirst), ",") {
		attrs[a[:1]] = a[2:]
	}
	if !strings.HasPrefix(attrs["r"], clientNonce) || attrs["i"] != "15000" {
		t.Fatalf("server-first %q: want our nonce first and 15000 iterations", serverFirst)
	}
	salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
	salted := pbkdf2.Key([]byte(creds.MongoPassword), salt, 15000, sha256.Size, sha256.New)
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + attrs["r"]
	authMessage := clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	sig := hmacSHA256(storedKey[:], authMessage)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}

	// Mid-conversation, still refused.
	if code, _ := call(find).Lookup("code").Int32OK(); code != 13 {
		t.Fatalf("find between saslStart and saslContinue: code %d, want 13", code)
	}
	cont := func(payload string) bsoncore.Document {
		return call(bsoncore.NewDocumentBuilder().AppendInt32("saslContinue", 1).AppendInt32("conversationId", 1).
			AppendBinary("payload", 0, []byte(payload)).AppendString("$db", "admin").Build())
	}
	// The find above ended nothing; the conversation goes on.
	r := cont(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))
	_, serverFinal, _ := r.Lookup("payload").BinaryOK()
	done, _ := r.Lookup("done").BooleanOK()
	wantFinal := "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(hmacSHA256(salted, "Server Key"), authMessage))
	if !isOK(r) || done || string(serverFinal) != wantFinal {
		t.Fatalf("saslContinue = %s, want done false and the server's signature", r)
	}
	if code, _ := call(find).Lookup("code").Int32OK(); code != 13 {
		t.Fatalf("find before the last empty exchange: code %d, want 13", code)
	}
	r = cont("")
	if done, _ := r.Lookup("done").BooleanOK(); !isOK(r) || !done {
		t.Fatalf("last saslContinue = %s, want done", r)
	}
	if r := call(find); !isOK(r) {
		t.Fatalf("find after authenticating = %s, want ok", r)
	}
}

// TestStoreRefusesLargeUnauthenticatedMessages: a client that has not
// authenticated cannot make the proxy hold a large message.
func TestStoreRefusesLargeUnauthenticatedMessages(t *testing.T) {
	s, _ := authStack(t)
	conn, err := net.Dial("tcp", s.mongoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:4], 1<<20)
	binary.LittleEndian.PutUint32(hdr[12:16], opMsg)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the proxy answered a 1 MiB message from an unauthenticated client; want the connection closed")
	}
}

func TestNATSRequiresCredentials(t *testing.T) {
	s, creds := authStack(t)
	u, _ := url.Parse(s.NATSURL())
	if u.User.Username() != creds.NATSUser {
		t.Fatalf("NATSURL() = %s, want the NATS user in it", u.Redacted())
	}
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatalf("nats.Connect with credentials: %v", err)
	}
	nc.Close()

	wrong := creds
	wrong.NATSPassword = "guess"
	for name, url := range map[string]string{
		"no credentials": "nats://" + s.natsAddr,
		"wrong password": wrong.NATSURL(s.natsAddr),
	} {
		nc, err := nats.Connect(url, nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected, want refused", name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization error", name, err)
		}
	}

	// A restart keeps requiring them.
	s.StopNATS()
	if err := s.StartNATS(); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect("nats://"+s.natsAddr, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("after StartNATS: connected without credentials")
	}
}

// TestStoreHandshake sends the legacy hello a driver opens a connection
// with: FerretDB's answer comes back with SCRAM-SHA-256 offered and the
// speculative saslStart answered by the proxy.
func TestStoreHandshake(t *testing.T) {
	s, creds := authStack(t)
	conn, err := net.Dial("tcp", s.mongoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	hello := bsoncore.NewDocumentBuilder().AppendInt32("isMaster", 1).
		AppendString("saslSupportedMechs", "admin.nobody").
		AppendDocument("speculativeAuthenticate", bsoncore.NewDocumentBuilder().AppendInt32("saslStart", 1).
			AppendString("mechanism", scramMechanism).AppendBinary("payload", 0, []byte("n,,n="+creds.MongoUser+",r=abcdefgh")).
			AppendString("db", "admin").Build()).
		Build()
	// OP_QUERY: flags, "admin.$cmd", skip 0, return -1, the document.
	msg := make([]byte, 16, 64+len(hello))
	binary.LittleEndian.PutUint32(msg[4:8], 99)
	binary.LittleEndian.PutUint32(msg[12:16], opQuery)
	msg = binary.LittleEndian.AppendUint32(msg, 0)
	msg = append(msg, "admin.$cmd\x00"...)
	msg = binary.LittleEndian.AppendUint32(msg, 0)
	msg = binary.LittleEndian.AppendUint32(msg, 0xffffffff)
	msg = append(msg, hello...)
	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	reply, err := readMessage(conn, maxMessage)
	if err != nil {
		t.Fatal(err)
	}
	d, _, ok := bodyDocument(reply)
	if opCode(reply) != opReply || !ok || binary.LittleEndian.Uint32(reply[8:12]) != 99 {
		t.Fatalf("reply opcode %d to %d, want an OP_REPLY to 99", opCode(reply), binary.LittleEndian.Uint32(reply[8:12]))
	}
	if _, err := d.LookupErr("maxWireVersion"); err != nil || !isOK(d) {
		t.Errorf("hello reply %s: want FerretDB's answer, ok", d)
	}
	if mechs, _ := d.Lookup("saslSupportedMechs").ArrayOK(); mechs.String() != `["SCRAM-SHA-256"]` {
		t.Errorf("saslSupportedMechs = %s, want [SCRAM-SHA-256] for any user", mechs)
	}
	spec, ok := d.Lookup("speculativeAuthenticate").DocumentOK()
	_, payload, _ := spec.Lookup("payload").BinaryOK()
	if !ok || !strings.HasPrefix(string(payload), "r=abcdefgh") {
		t.Errorf("speculativeAuthenticate = %s, want the server-first message", spec)
	}
	if elems, _ := d.Elements(); len(elems) == 0 || elems[len(elems)-1].Key() != "ok" {
		t.Errorf("hello reply %s: want ok last", d)
	}
}

// TestStoreUpstreamPrivate: FerretDB, which checks no credentials, listens
// only on a socket in a directory no other user can enter, so the proxy is
// the only way in; the directory goes when the store stops.
func TestStoreUpstreamPrivate(t *testing.T) {
	s, _ := authStack(t)
	p := s.ferret.proxy
	if p.network != "unix" {
		t.Fatalf("FerretDB listens on %s %s, want a Unix socket", p.network, p.address)
	}
	fi, err := os.Stat(filepath.Dir(p.address))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("FerretDB's socket directory has mode %o, want 700", perm)
	}
	s.StopMongo()
	if _, err := os.Stat(filepath.Dir(p.address)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after StopMongo the socket directory is still there (%v)", err)
	}
	if err := s.StartMongo(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := connectMongo(t, s.MongoURI()).Ping(ctx, nil); err != nil {
		t.Fatalf("Ping after StartMongo: %v", err)
	}
}
