package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
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
			t.Errorf("withLocalCredentials(%q) = %q, want %q", tc.in, redactURL(got), redactURL(tc.want))
		}
	}
	t.Setenv("PIZZASHOP_DATA", t.TempDir())
	if got := withLocalCredentials("nats://127.0.0.1:4222"); got != "nats://127.0.0.1:4222" {
		t.Errorf("without a credentials file: %q, want the URL unchanged", got)
	}
}
