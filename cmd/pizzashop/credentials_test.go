package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/pkg/mongox"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// deadletters and events find the embedded NATS's credentials in the data
// directory named by PIZZASHOP_DATA, as they find its moved address.
func TestCommandsFindLocalCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts FerretDB")
	}
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, err := devstack.LoadOrCreateCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := devstack.Start(ctx, devstack.Options{Dir: data, Credentials: &creds})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, _ := url.Parse(st.NATSURL())
	t.Setenv("NATS_URL", "")
	t.Setenv("PIZZASHOP_NATS_ADDR", u.Host)

	t.Setenv("PIZZASHOP_DATA", t.TempDir()) // another shop's directory: no credentials
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"deadletters", "list"}, &out, &errOut)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("deadletters list without the credentials = %v, want an authorization error", err)
	}
	if strings.Contains(err.Error(), creds.NATSPassword) {
		t.Errorf("error %q shows the password", err)
	}

	t.Setenv("PIZZASHOP_DATA", data)
	out.Reset()
	if err := run(ctx, []string{"deadletters", "list"}, &out, &errOut); err != nil {
		t.Fatalf("deadletters list with PIZZASHOP_DATA=%s: %v\n%s", data, err, errOut.String())
	}
	if !strings.Contains(out.String(), "no dead letters") {
		t.Errorf("deadletters list = %q, want \"no dead letters\"", out.String())
	}
	// events connects too: the stream it asks for is missing, which only
	// a connected client learns.
	err = run(ctx, []string{"events", "get", "NOSUCH", "1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `no stream "NOSUCH"`) {
		t.Errorf("events get NOSUCH 1 = %v, want no stream \"NOSUCH\"", err)
	}
}

func TestWithLocalCredentials(t *testing.T) {
	data := t.TempDir()
	creds, err := devstack.LoadOrCreateCredentials(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PIZZASHOP_DATA", data)
	withCreds := func(host string) string { return creds.NATSURL(host) }
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", withCreds("127.0.0.1:4222")},
		{"nats://localhost:14222", withCreds("localhost:14222")},
		{"nats://127.0.0.1:4222,nats://127.0.0.1:4223", withCreds("127.0.0.1:4222") + "," + withCreds("127.0.0.1:4223")},
		{"nats://nats.example:4222", "nats://nats.example:4222"},               // never sent elsewhere
		{"nats://me:secret@127.0.0.1:4222", "nats://me:secret@127.0.0.1:4222"}, // the caller's own
	} {
		if got := withLocalCredentials(tc.in); got != tc.want {
			t.Errorf("withLocalCredentials(%q) = %q, want %q", tc.in, config.RedactURL(got), config.RedactURL(tc.want))
		}
	}
	t.Setenv("PIZZASHOP_DATA", t.TempDir())
	if got := withLocalCredentials("nats://127.0.0.1:4222"); got != "nats://127.0.0.1:4222" {
		t.Errorf("without a credentials file: %q, want the URL unchanged", got)
	}
}

// TestShopRequiresCredentials runs the shop as make run does: it generates
// the credentials in the data directory, every service uses them (the shop
// gets ready), the embedded NATS and store refuse a client without them,
// and neither the terminal nor any log shows a password.
func TestShopRequiresCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and starts the whole shop")
	}
	root := workspaceRoot(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./services/menu", "./services/order", "./services/kitchen", "./services/delivery", "./gateway", "./cmd/pizzashop")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", root, err, out)
	}
	data := t.TempDir()
	ports := freePorts(t)
	shop := startLauncher(t, filepath.Join(bin, "pizzashop"), []string{"run", "--data", data,
		"--base-port", strconv.Itoa(ports.base), "--http", ports.http,
		"--nats-addr", ports.nats, "--mongo-addr", ports.mongo})
	shop.waitReady(t)

	path := filepath.Join(data, devstack.CredentialsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no credentials after the first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, fi.Mode().Perm())
	}
	creds, err := devstack.LoadCredentials(data)
	if err != nil {
		t.Fatal(err)
	}

	if nc, err := nats.Connect("nats://"+ports.nats, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Errorf("NATS at %s let a client without credentials in", ports.nats)
	}
	nc, err := nats.Connect(creds.NATSURL(ports.nats), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("NATS with the credentials of %s: %v", path, err)
	}
	nc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon, err := mongox.Connect("mongodb://"+ports.mongo+"/", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = anon.Disconnect(ctx) }()
	var ce mongo.CommandError
	if _, err := anon.Database("pizzashop_order").Collection("orders").CountDocuments(ctx, bson.D{}); !errors.As(err, &ce) || ce.Code != 13 {
		t.Errorf("counting orders without credentials: %v, want error 13 Unauthorized", err)
	}
	mc, err := mongox.Connect(creds.MongoURI(ports.mongo), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mc.Disconnect(ctx) }()
	names, err := mc.ListDatabaseNames(ctx, bson.D{})
	if err != nil || len(names) == 0 {
		t.Errorf("databases with the credentials: %v, %v; want the services' databases", names, err)
	}

	code, _ := shop.interrupt(t, 30*time.Second)
	if code != 0 {
		t.Fatalf("pizzashop exited with status %d after SIGINT", code)
	}
	logs, _ := filepath.Glob(filepath.Join(data, "logs", "*.log"))
	for _, where := range append(logs, "terminal") {
		text := shop.output()
		if where != "terminal" {
			b, _ := os.ReadFile(where)
			text = string(b)
		}
		for _, secret := range []string{creds.NATSPassword, creds.MongoPassword} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows a password of %s", where, path)
			}
		}
	}

	// A second start on the same directory keeps them.
	shop = startLauncher(t, filepath.Join(bin, "pizzashop"), []string{"run", "--data", data,
		"--base-port", strconv.Itoa(ports.base), "--http", ports.http,
		"--nats-addr", ports.nats, "--mongo-addr", ports.mongo})
	shop.waitReady(t)
	if again, err := devstack.LoadCredentials(data); err != nil || again != creds {
		t.Errorf("after a restart the credentials changed (%v)", err)
	}
}
