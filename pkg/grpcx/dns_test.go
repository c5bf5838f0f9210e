package grpcx_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/grpcx"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	"google.golang.org/grpc/resolver/dns"
)

func TestMain(m *testing.M) {
	// grpc-go's dns resolver looks a name up again at most every 30s; the
	// tests below follow replicas that come and go in well under that.
	dns.SetMinResolutionInterval(20 * time.Millisecond)
	os.Exit(m.Run())
}

// fakeDNS is a DNS server on loopback that answers every A query, whatever
// the name, with its current addresses, and every other query with none.
// It stands in for the cluster DNS answering a headless Service's name
// with one address per ready pod.
type fakeDNS struct {
	conn net.PacketConn
	mu   sync.Mutex
	ips  []net.IP
}

func startDNS(t *testing.T, ips ...string) *fakeDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	d := &fakeDNS{conn: conn}
	d.set(ips...)
	go d.serve()
	t.Cleanup(func() { conn.Close() })
	return d
}

func (d *fakeDNS) set(ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = nil
	for _, s := range ips {
		d.ips = append(d.ips, net.ParseIP(s).To4())
	}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.conn.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query: its header and question, then
// one A record per address with a TTL of 0.
func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qtype, end := binary.BigEndian.Uint16(q[i+1:i+3]), i+5
	var answers []net.IP
	if qtype == 1 { // A
		d.mu.Lock()
		answers = append(answers, d.ips...)
		d.mu.Unlock()
	}
	resp := make([]byte, 12, 512)
	copy(resp, q[:2])
	// QR, authoritative, recursion desired as asked, recursion available.
	binary.BigEndian.PutUint16(resp[2:], 0x8000|0x0400|binary.BigEndian.Uint16(q[2:4])&0x0100|0x0080)
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], uint16(len(answers)))
	resp = append(resp, q[12:end]...)
	for _, ip := range answers {
		// name: pointer to the question's; type A, class IN, TTL 0, 4 bytes.
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
		resp = append(resp, ip...)
	}
	return resp
}

// replicasOnLoopback starts n servers on one port, at 127.0.0.1,
// 127.0.0.2, ..., as pods of one Deployment share their port, and counts
// the calls each one takes.
func replicasOnLoopback(t *testing.T, n int) (envs []*env, counts []*atomic.Int64, ips []string, port string) {
	t.Helper()
	for range 10 { // another process may hold the port on one of the addresses
		envs, counts, ips = nil, nil, nil
		first := newEnv(t)
		_, port, _ = net.SplitHostPort(first.addr)
		envs = append(envs, first)
		ok := true
		for k := 2; k <= n; k++ {
			e := newEnv(t)
			e.lis.Close()
			lis, err := net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.0.0.%d", k), port))
			if err != nil {
				ok = false
				break
			}
			e.lis, e.addr = lis, lis.Addr().String()
			envs = append(envs, e)
		}
		if ok {
			break
		}
		for _, e := range envs {
			e.lis.Close()
		}
		envs = nil
	}
	if envs == nil {
		t.Fatalf("found no port free on 127.0.0.1-%d", n)
	}
	for k, e := range envs {
		c := &atomic.Int64{}
		e.menu.getMenu = func(context.Context) error { c.Add(1); return nil }
		e.serve(t, time.Second)
		counts, ips = append(counts, c), append(ips, "127.0.0."+strconv.Itoa(k+1))
	}
	return envs, counts, ips, port
}

// dnsTarget names the replicas through d: "dns://<d>/replicas.pizzashop.test:<port>".
func dnsTarget(d *fakeDNS, port string) string {
	return "dns://" + d.conn.LocalAddr().String() + "/replicas.pizzashop.test:" + port
}

// callUntil calls GetMenu until every replica in want has taken a call and
// no other replica has, counting from the moment it is called (calls already
// picked when the addresses changed may land on the old ones: it retries
// from a clean slate until the 10 last calls all went where wanted).
func callUntil(t *testing.T, client menuv1.MenuServiceClient, counts []*atomic.Int64, want ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		reset(counts)
		var err error
		for range 10 {
			if _, err = client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
				break
			}
		}
		l := loads(counts)
		good := err == nil
		for i, n := range l {
			wanted := false
			for _, w := range want {
				wanted = wanted || w == i
			}
			good = good && (n > 0) == wanted
		}
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls per replica = %v (last error %v), want calls on replicas %v only", l, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A dns target whose name resolves to three addresses balances round robin
// over the three replicas, as over a list of three addresses.
func TestDialBalancedDNSRoundRobin(t *testing.T) {
	_, counts, ips, port := replicasOnLoopback(t, 3)
	d := startDNS(t, ips...)
	client := dialBalanced(t, dnsTarget(d, port))
	waitEvery(t, client, counts)
	reset(counts)
	for range 60 {
		if _, err := client.GetMenu(testCtx(t), &menuv1.GetMenuRequest{}); err != nil {
			t.Fatalf("GetMenu: %v", err)
		}
	}
	for i, n := range loads(counts) {
		if n != 20 {
			t.Errorf("replica %d took %d of 60 calls, want 20 (round robin over every address of the name); all: %v", i, n, loads(counts))
		}
	}
}

// The name is looked up again when a replica's connection fails: a
// replica gone from the name and stopped takes no more calls, and one that
// joined the name takes its share.
func TestDialBalancedDNSFollowsReplicas(t *testing.T) {
	envs, counts, ips, port := replicasOnLoopback(t, 3)
	d := startDNS(t, ips[0], ips[1])
	client := dialBalanced(t, dnsTarget(d, port))
	callUntil(t, client, counts, 0, 1)

	// A rolling update: replica 2 is ready, replica 0 stops.
	d.set(ips[1], ips[2])
	envs[0].srv.Health.Shutdown()
	envs[0].srv.Stop()
	callUntil(t, client, counts, 1, 2)
}

// Servers close their connections after maxConnectionAge, so a client
// looks the name up again even when no replica stops, and finds a replica
// added since (a scale-up).
func TestDialBalancedDNSFindsNewReplica(t *testing.T) {
	defer grpcx.SetMaxConnectionAge(300 * time.Millisecond)()
	_, counts, ips, port := replicasOnLoopback(t, 2)
	d := startDNS(t, ips[0])
	client := dialBalanced(t, dnsTarget(d, port))
	callUntil(t, client, counts, 0)

	d.set(ips...)
	callUntil(t, client, counts, 0, 1)
}

// dns:/// without a server asks the system's resolver.
func TestDialBalancedDNSSystemResolver(t *testing.T) {
	_, counts, addrs := replicas(t, 1)
	_, port, _ := net.SplitHostPort(addrs)
	client := dialBalanced(t, "dns:///localhost:"+port)
	waitEvery(t, client, counts)
}
