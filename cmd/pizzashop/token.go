package main

import (
	"fmt"
	"io"
	"time"

	"github.com/pizzashop/pizzashop/pkg/auth"
)

// runToken prints a credential signed with the key the local services
// verify with: AUTH_SECRET, or the development key when it is unset.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "pizzashop token --role ROLE --sub ID [--name NAME] [--ttl 24h]", stderr)
	role := fs.String("role", "", "customer, kitchen, courier, admin or service")
	sub := fs.String("sub", "", "who the token is for: a customer id such as alice, or a staff id")
	name := fs.String("name", "", "display name (optional)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !auth.Role(*role).Valid() {
		return usageErrorf("token: --role %q is not a role: want customer, kitchen, courier, admin or service", *role)
	}
	if *sub == "" {
		return usageErrorf("token: --sub is required, for example --sub alice")
	}
	if *ttl <= 0 {
		return usageErrorf("token: --ttl must be positive, got %s", *ttl)
	}
	secret := envOr("AUTH_SECRET", auth.DevSecret)
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return fmt.Errorf("AUTH_SECRET: %w", err)
	}
	token, _, err := signer.Sign(auth.Claims{Subject: *sub, Role: auth.Role(*role), Name: *name}, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}
