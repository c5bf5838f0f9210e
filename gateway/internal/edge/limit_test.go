package edge_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/pizzashop/pizzashop/gateway/internal/edge"
	"github.com/pizzashop/pizzashop/pkg/auth"
)

func TestCheckedHeaders(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		header, value string
	}{
		{"Idempotency-Key", "café-1"},
		{"Idempotency-Key", "a b"},
		{"Idempotency-Key", "k-4111 1111 1111 1111"},
		{"Idempotency-Key", strings.Repeat("k", 201)},
		{"X-Request-Id", "4111111111111111"},
		{"X-Request-Id", "req\u00a0id"},
	}
	for _, tt := range tests {
		t.Run(tt.header+" "+tt.value[:min(len(tt.value), 12)], func(t *testing.T) {
			_, before := s.order.seen()
			resp, body := s.do(t, "POST", "/v1/orders", strings.NewReader(validOrder), http.Header{tt.header: {tt.value}})
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("POST /v1/orders with %s %q = %d, want 400\n%s", tt.header, tt.value, resp.StatusCode, body)
			}
			st := decodeStatus(t, "POST /v1/orders", body)
			if codes.Code(st.Code) != codes.InvalidArgument || !strings.HasPrefix(st.Message, tt.header+": ") {
				t.Errorf("status = %d %q, want INVALID_ARGUMENT naming %s", st.Code, st.Message, tt.header)
			}
			if _, after := s.order.seen(); after != before {
				t.Errorf("the order service was called %d times, want 0", after-before)
			}
		})
	}
	if resp, body := s.do(t, "POST", "/v1/orders", strings.NewReader(validOrder), http.Header{"Idempotency-Key": {"7f3c2a"}, "X-Request-Id": {"req-42"}}); resp.StatusCode != http.StatusOK {
		t.Errorf("POST /v1/orders with good headers = %d, want 200\n%s", resp.StatusCode, body)
	}
	logs := s.logs.String()
	// Whole values: a short run of digits also turns up in timestamps and
	// trace ids.
	if strings.Contains(logs, "4111 1111") || strings.Contains(logs, "4111111111111111") || strings.Contains(logs, "café") {
		t.Errorf("the log holds a refused header value:\n%s", logs)
	}
}

// withSigner makes the gateway check credentials before reading bodies, and
// returns a valid token.
func withSigner(t *testing.T, maxBody int64) (stackOption, string) {
	signer, err := auth.NewSigner(auth.DevSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := signer.Sign(auth.Claims{Subject: "alice", Role: auth.RoleCustomer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return func(_ *stack, o *edge.Options) {
		o.Signer = signer
		o.MaxBodyBytes = maxBody
		o.AnonymousBodyBytes = 512
		o.BodyTimeout = 500 * time.Millisecond
	}, tok
}

func TestAuthenticateBeforeBody(t *testing.T) {
	opt, tok := withSigner(t, 8<<10)
	s := newStack(t, opt)
	big := validOrder + strings.Repeat(" ", 2048)
	tests := []struct {
		name   string
		authz  string
		body   string
		status int
	}{
		{"anonymous small", "", validOrder, http.StatusOK},
		{"anonymous large", "", big, http.StatusRequestEntityTooLarge},
		{"valid credential large", "Bearer " + tok, big, http.StatusOK},
		{"forged credential", "Bearer " + tok[:len(tok)-4] + "AAAA", big, http.StatusUnauthorized},
		{"garbage credential", "Bearer not-a-token", validOrder, http.StatusUnauthorized},
		{"other scheme", "Basic YWRtaW46YWRtaW4=", validOrder, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.authz != "" {
				h.Set("Authorization", tt.authz)
			}
			resp, body := s.do(t, "POST", "/v1/orders", strings.NewReader(tt.body), h)
			if resp.StatusCode != tt.status {
				t.Fatalf("POST /v1/orders = %d, want %d\n%s", resp.StatusCode, tt.status, body)
			}
			if tt.status != http.StatusOK {
				decodeStatus(t, "POST /v1/orders", body)
			}
		})
	}

	// A forged credential is refused before the body is read: the answer
	// comes while the client is still holding most of the body back.
	conn := rawConn(t, s.url)
	fmt.Fprintf(conn, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer forged\r\nContent-Length: 60000\r\n\r\n{")
	resp := readResponse(t, conn)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged credential with a body held back = %d, want 401", resp.StatusCode)
	}
}

func TestSlowBody(t *testing.T) {
	opt, tok := withSigner(t, 8<<10)
	s := newStack(t, opt)
	conn := rawConn(t, s.url)
	begin := time.Now()
	fmt.Fprintf(conn, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{", tok)
	// One byte now and then, never the whole body.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp := readResponse(t, conn)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow body = %d, want 408", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	decodeStatus(t, "slow body", body)
	// The connection is closed.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after the body timeout = %v, want the connection closed", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("slow body answered after %v, want about the 500ms body timeout", took)
	}
	// A live stream (no body) is not subject to the body deadline.
	if resp, body := s.do(t, "GET", "/v1/menu", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/menu = %d\n%s", resp.StatusCode, body)
	}
}

// jsonServer serves the gateway behind edge.Listen with the real server's
// header limit.
func jsonServer(t *testing.T, maxConns int) string {
	s := newStack(t)
	srv := httptest.NewUnstartedServer(s.gw)
	srv.Listener = edge.Listen(srv.Listener, maxConns)
	srv.Config.MaxHeaderBytes = 4 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestServerErrorsAreJSON(t *testing.T) {
	url := jsonServer(t, 0)
	tests := []struct {
		name    string
		request string
		status  int
	}{
		{"DEL in a header", "GET /v1/menu HTTP/1.1\r\nHost: x\r\nX-Note: a\x7fb\r\n\r\n", http.StatusBadRequest},
		{"NUL in a header", "GET /v1/menu HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n", http.StatusBadRequest},
		{"NUL in a header name", "GET /v1/menu HTTP/1.1\r\nHost: x\r\nX-\x00: b\r\n\r\n", http.StatusBadRequest},
		{"headers too large", "GET /v1/menu HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"garbage request line", "HELLO\r\n\r\n", http.StatusBadRequest},
		{"no Host", "GET /v1/menu HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"bad transfer encoding", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawConn(t, url)
			if _, err := io.WriteString(conn, tt.request); err != nil {
				t.Fatal(err)
			}
			resp := readResponse(t, conn)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			body, _ := io.ReadAll(resp.Body)
			st := decodeStatus(t, tt.name, body)
			if st.Code == 0 || st.Message == "" {
				t.Errorf("status body = %s, want a code and a message", body)
			}
			if strings.ContainsAny(st.Message, "\x00\x7f") {
				t.Errorf("message %q quotes the bad bytes", st.Message)
			}
		})
	}
	// Ordinary answers pass untouched.
	resp, err := http.Get(url + "/v1/menu")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/menu through edge.Listen = %d, want 200", resp.StatusCode)
	}
}

func TestConnectionCap(t *testing.T) {
	url := jsonServer(t, 2)
	held := []net.Conn{rawConn(t, url), rawConn(t, url)}
	for _, c := range held {
		// Make sure the server has accepted both.
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp := readResponse(t, c); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz = %d", resp.StatusCode)
		}
	}
	third := rawConn(t, url)
	resp := readResponse(t, third)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection = %d, want 503", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	decodeStatus(t, "third connection", body)
	// Closing one frees its place.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz after freeing a connection = %v, %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAccessLogRedacts(t *testing.T) {
	s := newStack(t)
	s.do(t, "GET", "/v1/orders/4111111111111111", nil, nil)
	s.do(t, "GET", "/v1/orders/"+strings.Repeat("x", 100), nil, nil)
	s.do(t, "GET", "/v1/orders/abc%0Adef", nil, nil)
	s.do(t, "GET", "/v1/no/4111-1111-1111-1111", nil, nil)
	s.do(t, "GET", "/v1/orders/4111/1111/1111/1111", nil, nil)
	s.do(t, "GET", "/v1/menu", nil, http.Header{"X-Request-Id": {"req%20with%20junk"}})
	logs := s.logs.String()
	untimed := withoutRandomFields(logs)
	for _, bad := range []string{"4111", "xxxxxxxxxx", "abc", "junk"} {
		if strings.Contains(untimed, bad) {
			t.Errorf("the log holds %q:\n%s", bad, logs)
		}
	}
	var redacted, malformed int
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if p, _ := rec["path"].(string); strings.Contains(p, "{redacted}") {
			redacted++
		}
		if rec["request_id_malformed"] == true {
			malformed++
		}
	}
	if redacted != 5 || malformed != 1 {
		t.Errorf("%d redacted paths and %d malformed request ids logged, want 5 and 1:\n%s", redacted, malformed, logs)
	}
}

func rawConn(t *testing.T, url string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

func readResponse(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}
