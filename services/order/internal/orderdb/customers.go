package orderdb

import (
	"context"
	"fmt"
	"time"

	"github.com/pizzashop/pizzashop/pkg/mongox"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"go.mongodb.org/mongo-driver/v2/bson"
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
