package order

import (
	"errors"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pizzashop/pizzashop/pkg/errs"
)

// Profile is a registered customer.
type Profile struct {
	ID         string
	Name       string
	Email      string
	Phone      string
	Address    *Address
	CreateTime time.Time
}

// ErrEmailTaken: another customer registered with that email.
var ErrEmailTaken = errs.New(errs.KindAlreadyExists, "EMAIL_TAKEN", "a customer with this email is already registered")

// ErrCustomerNotFound: no customer has that id.
var ErrCustomerNotFound = errs.New(errs.KindNotFound, "CUSTOMER_NOT_FOUND", "customer not found")

// ErrSignInFailed: the email is unknown or the password wrong. The two are
// one error on purpose, so that sign-in does not reveal who is registered.
var ErrSignInFailed = errs.New(errs.KindUnauthenticated, "SIGN_IN_FAILED", "email or password is not correct")

// ErrTooManyAttempts: sign-in was tried too often for this email or from
// this client; the caller should wait.
var ErrTooManyAttempts = errs.New(errs.KindTooManyRequests, "TOO_MANY_SIGN_IN_ATTEMPTS", "too many sign-in attempts")

// Password length bounds, in characters. The upper bound keeps hashing
// cheap to refuse for absurd inputs.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 128
)

// ValidatePassword checks a new password's length. Anything else (a pass
// phrase, symbols, spaces) is the customer's choice.
func ValidatePassword(pw string) error {
	if n := utf8.RuneCountInString(pw); n < MinPasswordLen || n > MaxPasswordLen {
		return errs.Invalid("password", "must be %d to %d characters, got %d", MinPasswordLen, MaxPasswordLen, n)
	}
	return nil
}

// MaxEmailLen bounds an email, in bytes, as RFC 5321 does.
const MaxEmailLen = 254

// NormalizeEmail is the form emails are compared in.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// NewProfile validates a registration.
func NewProfile(id, name, email, phone string, addr *Address, now time.Time) (Profile, error) {
	p := Profile{ID: id, Name: strings.TrimSpace(name), Email: NormalizeEmail(email),
		Phone: strings.TrimSpace(phone), CreateTime: now.UTC()}
	var problems []error
	if n := utf8.RuneCountInString(p.Name); n == 0 || n > 80 {
		problems = append(problems, errs.Invalid("name", "must be 1 to 80 characters, got %d", n))
	}
	if a, err := mail.ParseAddress(p.Email); err != nil || a.Address != p.Email || len(p.Email) > MaxEmailLen {
		problems = append(problems, errs.Invalid("email", "is not a valid email address"))
	}
	if !validPhone(p.Phone) {
		problems = append(problems, errs.Invalid("phone", "must be 6 to 20 characters of digits, spaces, +, -, ( and )"))
	}
	if addr != nil && *addr != (Address{}) {
		problems = append(problems, addr.validate("address"))
		a := *addr
		p.Address = &a
	}
	if err := errors.Join(problems...); err != nil {
		return Profile{}, err
	}
	return p, nil
}

func validPhone(s string) bool {
	if len(s) < 6 || len(s) > 20 {
		return false
	}
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune("+-() ", r):
		default:
			return false
		}
	}
	return digits >= 6 && digits <= 15
}
