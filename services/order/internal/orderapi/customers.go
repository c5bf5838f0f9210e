package orderapi

import (
	"context"

	"github.com/pizzashop/pizzashop/pkg/auth"
	"github.com/pizzashop/pizzashop/pkg/ids"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
	"github.com/pizzashop/pizzashop/services/order/internal/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RegisterCustomer creates a customer and returns their credential.
func (s *Server) RegisterCustomer(ctx context.Context, req *orderv1.RegisterCustomerRequest) (*orderv1.RegisterCustomerResponse, error) {
	if err := rejectCards(req); err != nil {
		return nil, err
	}
	p, err := order.NewProfile(ids.New(), req.GetName(), req.GetEmail(), req.GetPhone(), addressFromProto(req.GetAddress()), s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateCustomer(ctx, p); err != nil {
		return nil, err
	}
	tok, exp, err := s.signer.Sign(auth.Claims{Subject: p.ID, Role: auth.RoleCustomer, Name: p.Name}, s.opts.TokenTTL)
	if err != nil {
		return nil, err
	}
	return &orderv1.RegisterCustomerResponse{Customer: profileToProto(p), Token: tok, TokenExpireTime: timestamppb.New(exp)}, nil
}

// GetCurrentCustomer returns the caller's profile.
func (s *Server) GetCurrentCustomer(ctx context.Context, _ *orderv1.GetCurrentCustomerRequest) (*orderv1.GetCurrentCustomerResponse, error) {
	c, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	p, err := s.store.GetCustomer(ctx, c.Subject)
	if err != nil {
		return nil, err
	}
	return &orderv1.GetCurrentCustomerResponse{Customer: profileToProto(p)}, nil
}
