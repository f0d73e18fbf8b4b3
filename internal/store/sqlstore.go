package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// sqlStore implements Store over either engine. All SQL in this package is
// written once for both dialects.
type sqlStore struct {
	e    engine
	opts Options
}

func (s *sqlStore) now() time.Time { return utc(s.opts.Now()) }

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.e.ping(ctx); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

func (s *sqlStore) Close() error {
	if err := s.e.close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

func (s *sqlStore) Migrations(ctx context.Context) ([]Migration, error) {
	return listMigrations(ctx, s.e)
}

// notFoundOr returns ErrNotFound for errNoRows and err otherwise, both
// wrapped with what.
func notFoundOr(err error, what string) error {
	if errors.Is(err, errNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkClaim validates the arguments of the Claim methods.
func checkClaim(limit int, owner string, claimFor time.Duration, needOwner bool) error {
	switch {
	case limit <= 0:
		return fmt.Errorf("invalid claim limit %d; give a positive number: %w", limit, ErrInvalid)
	case needOwner && owner == "":
		return fmt.Errorf("missing claim owner; give the replica's name: %w", ErrInvalid)
	case claimFor <= 0:
		return fmt.Errorf("invalid claim duration %s; give a positive duration: %w", claimFor, ErrInvalid)
	}
	return nil
}
