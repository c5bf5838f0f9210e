package main

import (
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/config"
)

func TestConfigDefaults(t *testing.T) {
	var cfg Config
	if err := config.LoadFrom(&cfg, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatalf("LoadFrom(no environment) = %v", err)
	}
	want := Config{
		HTTPAddr:        "127.0.0.1:8080",
		MenuAddr:        "127.0.0.1:9091",
		OrderAddr:       "127.0.0.1:9092",
		KitchenAddr:     "127.0.0.1:9093",
		DeliveryAddr:    "127.0.0.1:9094",
		MaxBodyBytes:    65536,
		AnonBodyBytes:   4096,
		BodyTimeout:     10 * time.Second,
		StreamTimeout:   30 * time.Second,
		MaxConns:        2048,
		ShutdownTimeout: 10 * time.Second,
		ShutdownDelay:   0,
		ReadyTimeout:    2 * time.Second,
	}
	if cfg != want {
		t.Errorf("defaults = %+v, want %+v", cfg, want)
	}
}
