package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	t.Setenv("PIZZASHOP_HTTP_ADDR", "127.0.0.1:18080")
	t.Setenv("PIZZASHOP_BASE_PORT", "19090")
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.url != "http://127.0.0.1:18080" || o.basePort != 19090 {
		t.Errorf("defaults = %s, base %d; want the moved ports of pizzashop run", o.url, o.basePort)
	}
	if len(o.sources) != 6 || o.sources[0].addr != "127.0.0.1:19190" || o.sources[5].addr != "127.0.0.1:18080" {
		t.Errorf("sources = %v, want launcher..delivery on 19190.. and the gateway", o.sources)
	}
	o, err = parseOptions([]string{"-lifecycle", "-url", "http://localhost:18080/"}, io.Discard)
	if err != nil || o.mode != modeLifecycle || o.url != "http://localhost:18080" {
		t.Errorf("-lifecycle -url ...: mode %q url %q err %v", o.mode, o.url, err)
	}
	if o, err = parseOptions([]string{"-lifecycle=false"}, io.Discard); err != nil || o.mode != modePlace || !o.display {
		t.Errorf("-lifecycle=false: mode %q display %v err %v, want %s following the display", o.mode, o.display, err, modePlace)
	}
	if o, err = parseOptions([]string{"-display=false"}, io.Discard); err != nil || o.display {
		t.Errorf("-display=false: display %v err %v, want placement alone", o.display, err)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-url", "http://10.0.0.8:8080"}, "loopback"},
		{[]string{"-url", "ftp://127.0.0.1"}, "want http://"},
		{[]string{"-mode", "bake"}, `-mode "bake"`},
		{[]string{"-rate", "0"}, "-rate 0"},
		{[]string{"-clients", "-1"}, "-clients -1"},
		{[]string{"-ramp", "-clients", "4"}, "-ramp"},
		{[]string{"-ramp", "-rate", "100", "-ramp-max", "50"}, "-ramp-max"},
		{[]string{"-delivery-share", "2"}, "-delivery-share 2"},
		{[]string{"-base-port", "70000"}, "-base-port 70000"},
		{[]string{"-metrics", "gateway"}, "name=value"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-lifecycle", "-display=false"}, "-display=false"},
		// Not numbers: the schedule, the ramp's steps and the JSON report
		// cannot hold them (a NaN step never reaches -ramp-max).
		{[]string{"-rate", "NaN"}, "-rate NaN"},
		{[]string{"-rate", "+Inf"}, "-rate +Inf"},
		{[]string{"-ramp", "-ramp-step", "NaN"}, "-ramp-step NaN"},
		{[]string{"-ramp", "-ramp-max", "Inf"}, "-ramp-max +Inf"},
		{[]string{"-delivery-share", "NaN"}, "-delivery-share NaN"},
	}
	for _, b := range bad {
		if _, err := parseOptions(b.args, io.Discard); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("parseOptions(%q) = %v, want an error naming %q", b.args, err, b.want)
		}
	}
	t.Setenv("PIZZASHOP_BASE_PORT", "abc")
	if _, err := parseOptions(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "PIZZASHOP_BASE_PORT") {
		t.Errorf("PIZZASHOP_BASE_PORT=abc: err = %v, want it named", err)
	}
}

// With PIZZASHOP_REPLICAS, pizzashop run starts every service that many
// times, replica R's metrics on base+100+10(R-1)+N: the CPU of a run counts
// every replica, under the names the launcher gives them.
func TestParseOptionsReplicas(t *testing.T) {
	t.Setenv("PIZZASHOP_HTTP_ADDR", "127.0.0.1:18080")
	t.Setenv("PIZZASHOP_BASE_PORT", "19090")
	t.Setenv("PIZZASHOP_REPLICAS", "2")
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := "launcher=http://127.0.0.1:19190/metrics " +
		"menu-1=http://127.0.0.1:19191/metrics menu-2=http://127.0.0.1:19201/metrics " +
		"order-1=http://127.0.0.1:19192/metrics order-2=http://127.0.0.1:19202/metrics " +
		"kitchen-1=http://127.0.0.1:19193/metrics kitchen-2=http://127.0.0.1:19203/metrics " +
		"delivery-1=http://127.0.0.1:19194/metrics delivery-2=http://127.0.0.1:19204/metrics " +
		"gateway=http://127.0.0.1:18080/metrics"
	if s := sourcesString(o.sources); s != want {
		t.Errorf("sources with 2 replicas =\n%s\nwant\n%s", s, want)
	}
	if o, err := parseOptions([]string{"-replicas", "1"}, io.Discard); err != nil || len(o.sources) != 6 {
		t.Errorf("-replicas 1: %d sources, err %v; want 6", len(o.sources), err)
	}
	for _, bad := range []string{"-1", "10"} {
		if _, err := parseOptions([]string{"-replicas", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "-replicas "+bad) {
			t.Errorf("-replicas %s: err = %v, want it named", bad, err)
		}
	}
	t.Setenv("PIZZASHOP_REPLICAS", "x")
	if _, err := parseOptions(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "PIZZASHOP_REPLICAS") {
		t.Errorf("PIZZASHOP_REPLICAS=x: err = %v, want it named", err)
	}
}
