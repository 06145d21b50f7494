package coordinator_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockcoord/lockcoord/coordinator"
)

func TestConflictError(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("X", 3600))
	ce := &coordinator.ConflictError{Resource: coordinator.Plan("42"), Holder: "worker 7", Token: 1234567890123456789, Count: 3, ExpiresAt: exp}
	want := `coordinator: conflict: plan/42 is held by "worker 7" (token 1234567890123456789, count 3) until 2030-01-02T02:04:05.6Z`
	if ce.Error() != want {
		t.Fatalf("Error() = %q, want %q", ce.Error(), want)
	}
	wrapped := fmt.Errorf("acquire: %w", ce)
	var got *coordinator.ConflictError
	if !errors.Is(wrapped, coordinator.ErrConflict) || !errors.As(wrapped, &got) || got != ce {
		t.Fatalf("wrapped conflict: Is/As failed")
	}
	for _, other := range []error{coordinator.ErrNotHeld, coordinator.ErrExpired, coordinator.ErrInvalid, coordinator.ErrClosed} {
		if errors.Is(ce, other) {
			t.Fatalf("a conflict matches %v", other)
		}
	}
}

func TestLeaseError(t *testing.T) {
	r := coordinator.Project("p")
	for _, tc := range []struct {
		e    *coordinator.LeaseError
		want string
		is   error
	}{
		{&coordinator.LeaseError{Op: "renew", Resource: r, Owner: "w1", Err: coordinator.ErrExpired},
			`coordinator: lease expired: renew project/p by "w1": resource is free`, coordinator.ErrExpired},
		{&coordinator.LeaseError{Op: "release", Resource: r, Owner: "w1", Holder: "w2", Err: coordinator.ErrNotHeld},
			`coordinator: lease not held: release project/p by "w1": held by "w2"`, coordinator.ErrNotHeld},
		{&coordinator.LeaseError{Op: "renew", Resource: r, Owner: "w1", Holder: "w1", HolderToken: 77, Err: coordinator.ErrNotHeld},
			`coordinator: lease not held: renew project/p by "w1": the lease now held has token 77`, coordinator.ErrNotHeld},
	} {
		if tc.e.Error() != tc.want {
			t.Errorf("Error() = %q, want %q", tc.e.Error(), tc.want)
		}
		var le *coordinator.LeaseError
		if err := fmt.Errorf("x: %w", tc.e); !errors.Is(err, tc.is) || !errors.As(err, &le) || le != tc.e || errors.Is(err, coordinator.ErrConflict) {
			t.Errorf("%v: Is/As wrong", tc.e)
		}
	}
}

func TestValidationErrorIs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", coordinator.ValidateType("Bad"))
	var ve *coordinator.ValidationError
	if !errors.Is(err, coordinator.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "resource type" || ve.Value != "Bad" {
		t.Fatalf("%v: want a ValidationError of the resource type", err)
	}
	if want := `coordinator: invalid resource type "Bad": must match [a-z][a-z0-9_-]{0,63}`; ve.Error() != want {
		t.Fatalf("Error() = %q, want %q", ve.Error(), want)
	}
}
