package orderdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

type customerDoc struct {
	ID         string      `bson:"_id"`
	Name       string      `bson:"name"`
	Email      string      `bson:"email"`
	Phone      string      `bson:"phone"`
	Address    *addressDoc `bson:"address,omitempty"`
	CreateTime time.Time   `bson:"create_time"`
}

// CreateCustomer stores a new customer.
func (s *Store) CreateCustomer(ctx context.Context, p order.Profile) error {
	d := customerDoc{ID: p.ID, Name: p.Name, Email: p.Email, Phone: p.Phone, CreateTime: p.CreateTime}
	if p.Address != nil {
		a := addressDoc(*p.Address)
		d.Address = &a
	}
	if _, err := s.customers.InsertOne(ctx, d); err != nil {
		return fmt.Errorf("create customer: %w", mongox.Translate(err, nil, order.ErrEmailTaken))
	}
	return nil
}

// credentialDoc is a customer's sign-in secret, kept apart from the profile
// so that profiles (and any cache of them) never carry it, and keyed by the
// normalized email so that signing in is one lookup by _id.
type credentialDoc struct {
	Email        string    `bson:"_id"`
	CustomerID   string    `bson:"customer_id"`
	PasswordHash string    `bson:"password_hash"`
	CreateTime   time.Time `bson:"create_time"`
}

func (s *Store) credentials() *mongo.Collection {
	return s.customers.Database().Collection("customer_credentials")
}

// orphanAge is how old a credential without its customer must be before a
// new registration may take its email: the registration that wrote it has
// crashed between its two writes.
const orphanAge = time.Minute

// RegisterCustomer stores a new customer with the hash of their password.
// The credential is written first and claims the email, so two racing
// registrations of one email cannot both succeed; a credential left without
// its customer by a crash is taken over by the next registration of that
// email.
func (s *Store) RegisterCustomer(ctx context.Context, p order.Profile, passwordHash string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("register customer: %w", err)
		}
	}()
	cred := credentialDoc{Email: p.Email, CustomerID: p.ID, PasswordHash: passwordHash, CreateTime: p.CreateTime}
	_, err = s.credentials().InsertOne(ctx, cred)
	if mongo.IsDuplicateKeyError(err) {
		err = s.takeOrphan(ctx, cred)
	}
	if err != nil {
		return mongox.Translate(err, nil, order.ErrEmailTaken)
	}
	if err := s.CreateCustomer(ctx, p); err != nil {
		// Give the email back, unless another registration took it over.
		_, _ = s.credentials().DeleteOne(ctx, bson.D{{Key: "_id", Value: p.Email}, {Key: "customer_id", Value: p.ID}})
		return err
	}
	return nil
}

// takeOrphan replaces the credential of cred's email if its customer was
// never written; otherwise the email is taken.
func (s *Store) takeOrphan(ctx context.Context, cred credentialDoc) error {
	var old credentialDoc
	if err := s.credentials().FindOne(ctx, bson.D{{Key: "_id", Value: cred.Email}}).Decode(&old); err != nil {
		return mongox.Translate(err, order.ErrEmailTaken, nil)
	}
	if cred.CreateTime.Sub(old.CreateTime) < orphanAge {
		return order.ErrEmailTaken
	}
	if _, err := s.GetCustomer(ctx, old.CustomerID); !errors.Is(err, order.ErrCustomerNotFound) {
		if err != nil {
			return err
		}
		return order.ErrEmailTaken
	}
	res, err := s.credentials().ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: cred.Email}, {Key: "customer_id", Value: old.CustomerID}}, cred)
	if err != nil {
		return err
	}
	if res.MatchedCount == 0 {
		return order.ErrEmailTaken // someone else took it over first
	}
	return nil
}

// Credential returns the customer id and password hash registered for
// email, or order.ErrCustomerNotFound.
func (s *Store) Credential(ctx context.Context, email string) (customerID, passwordHash string, err error) {
	var d credentialDoc
	if err := s.credentials().FindOne(ctx, bson.D{{Key: "_id", Value: email}}).Decode(&d); err != nil {
		return "", "", fmt.Errorf("get credential: %w", mongox.Translate(err, order.ErrCustomerNotFound, nil))
	}
	return d.CustomerID, d.PasswordHash, nil
}

// GetCustomer reads a customer.
func (s *Store) GetCustomer(ctx context.Context, id string) (order.Profile, error) {
	var d customerDoc
	if err := s.customers.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		return order.Profile{}, fmt.Errorf("get customer: %w", mongox.Translate(err, order.ErrCustomerNotFound, nil))
	}
	p := order.Profile{ID: d.ID, Name: d.Name, Email: d.Email, Phone: d.Phone, CreateTime: d.CreateTime.UTC()}
	if d.Address != nil {
		a := order.Address(*d.Address)
		p.Address = &a
	}
	return p, nil
}
