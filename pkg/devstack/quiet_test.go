package devstack

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestQuietResponses(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietResponses{Handler: slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})

	// FerretDB's reply warnings go to debug, which is off: nothing is written.
	log.With("conn", "c1").Warn("Response message: duplicate key")
	if buf.Len() != 0 {
		t.Fatalf("a reply warning was written: %s", buf.String())
	}
	// Below the level, nothing either, however many attributes were added.
	log.With("sql", "SELECT 1").WithGroup("g").With("n", 1).Debug("statement")
	if buf.Len() != 0 {
		t.Fatalf("a debug record was written: %s", buf.String())
	}
	// A warning about the store keeps every attribute and group, in order.
	log.With("conn", "c1").WithGroup("db").With("name", "orders").Warn("store trouble", "err", "disk full")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	db, _ := got["db"].(map[string]any)
	if got["msg"] != "store trouble" || got["level"] != "WARN" || got["conn"] != "c1" || db["name"] != "orders" || db["err"] != "disk full" {
		t.Errorf("record = %v, want the message at WARN with conn, and db.name and db.err in the group", got)
	}
}
