package main

import (
	"net"
	"strings"
	"testing"
)

// An address that is taken points at another shop; one that cannot be
// listened on for another reason says that reason instead.
func TestCheckFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()

	err = checkFree([][2]string{{busy, "menu gRPC"}})
	if err == nil || !strings.Contains(err.Error(), busy+" (menu gRPC") || !strings.Contains(err.Error(), "another pizzashop") {
		t.Errorf("checkFree(taken %s) = %v, want it named and another pizzashop suspected", busy, err)
	}

	for _, addr := range []string{"8080", "127.0.0.1:99999"} {
		err := checkFree([][2]string{{addr, "gateway HTTP"}})
		if err == nil {
			t.Errorf("checkFree(%q) = nil, want an error", addr)
			continue
		}
		if strings.Contains(err.Error(), "another pizzashop") {
			t.Errorf("checkFree(%q) = %q: blames another pizzashop for an address that is not valid", addr, err)
		}
		if !strings.Contains(err.Error(), "gateway HTTP") || !strings.Contains(err.Error(), addr) {
			t.Errorf("checkFree(%q) = %q, want the address and what it is for", addr, err)
		}
	}
}
