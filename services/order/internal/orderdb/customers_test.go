package orderdb_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pizzashop/pizzashop/pkg/devstack"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"github.com/pizzashop/pizzashop/services/order/internal/orderdb"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func profile(t *testing.T, id, email string, at time.Time) order.Profile {
	t.Helper()
	p, err := order.NewProfile(id, "Ann", email, "+1 555 0100", nil, at)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegisterCustomer(t *testing.T) {
	s, c := newStore(t), ctx(t)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if err := s.RegisterCustomer(c, profile(t, "c1", "ann@example.com", at), "hash-1"); err != nil {
		t.Fatalf("RegisterCustomer: %v", err)
	}
	id, hash, err := s.Credential(c, "ann@example.com")
	if err != nil || id != "c1" || hash != "hash-1" {
		t.Errorf("Credential(ann) = %q, %q, %v; want c1, hash-1", id, hash, err)
	}
	if _, err := s.GetCustomer(c, "c1"); err != nil {
		t.Errorf("GetCustomer(c1) = %v", err)
	}
	if _, _, err := s.Credential(c, "nobody@example.com"); !errors.Is(err, order.ErrCustomerNotFound) {
		t.Errorf("Credential(nobody) = %v, want ErrCustomerNotFound", err)
	}
	// The email is taken, by a credential or by a profile stored without one.
	if err := s.RegisterCustomer(c, profile(t, "c2", "ann@example.com", at.Add(time.Hour)), "hash-2"); !errors.Is(err, order.ErrEmailTaken) {
		t.Errorf("RegisterCustomer with a taken email = %v, want ErrEmailTaken", err)
	}
	if err := s.CreateCustomer(c, profile(t, "old", "old@example.com", at)); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterCustomer(c, profile(t, "c3", "old@example.com", at), "hash-3"); !errors.Is(err, order.ErrEmailTaken) {
		t.Errorf("RegisterCustomer with the email of a profile = %v, want ErrEmailTaken", err)
	}
	// ... and that failed registration gave its claim on the email back.
	if _, _, err := s.Credential(c, "old@example.com"); !errors.Is(err, order.ErrCustomerNotFound) {
		t.Errorf("Credential(old) after the failed registration = %v, want none left behind", err)
	}
}

func TestRegisterCustomerTakesOverAnOrphan(t *testing.T) {
	_, db := devstack.MongoDatabase(t)
	s, c := orderdb.New(db), ctx(t)
	if err := s.Init(c); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	// A registration that crashed after claiming the email: its credential
	// names a customer that was never written.
	if _, err := db.Collection("customer_credentials").InsertOne(c, bson.D{
		{Key: "_id", Value: "ghost@example.com"}, {Key: "customer_id", Value: "ghost"},
		{Key: "password_hash", Value: "hash-ghost"}, {Key: "create_time", Value: at}}); err != nil {
		t.Fatal(err)
	}

	if err := s.RegisterCustomer(c, profile(t, "new1", "ghost@example.com", at.Add(30*time.Second)), "hash-new"); !errors.Is(err, order.ErrEmailTaken) {
		t.Errorf("RegisterCustomer 30s after the crash = %v, want ErrEmailTaken: the first may still finish", err)
	}
	if err := s.RegisterCustomer(c, profile(t, "new2", "ghost@example.com", at.Add(2*time.Minute)), "hash-new"); err != nil {
		t.Fatalf("RegisterCustomer 2 min after the crash = %v, want it to take the email over", err)
	}
	if id, hash, err := s.Credential(c, "ghost@example.com"); err != nil || id != "new2" || hash != "hash-new" {
		t.Errorf("Credential(ghost) = %q, %q, %v; want new2, hash-new", id, hash, err)
	}
}
