package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/elevate-dev/elevate/internal/store"
	"github.com/elevate-dev/elevate/internal/store/storetest"
)

// postgresDSNVar names the environment variable with the DSN of a
// PostgreSQL database the tests may create schemas in. Tests that need it
// skip when it is unset; CI sets it.
const postgresDSNVar = "ELEVATE_TEST_POSTGRES_DSN"

// postgresBackend gives each database its own schema in the test database,
// selected through search_path, and drops it when the test ends.
func postgresBackend(t testing.TB) storetest.Backend {
	dsn := os.Getenv(postgresDSNVar)
	if dsn == "" {
		t.Skipf("%s is not set; set it to a PostgreSQL DSN to run these tests", postgresDSNVar)
	}
	return storetest.Backend{
		Replicas: true,
		NewDatabase: func(t testing.TB) string {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connect to %s: %v", postgresDSNVar, err)
			}
			defer conn.Close(ctx)
			buf := make([]byte, 6)
			rand.Read(buf)
			schema := "elevate_test_" + hex.EncodeToString(buf)
			if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
				t.Fatalf("create schema %s: %v", schema, err)
			}
			t.Cleanup(func() {
				conn, err := pgx.Connect(ctx, dsn)
				if err != nil {
					t.Errorf("connect to drop schema %s: %v", schema, err)
					return
				}
				defer conn.Close(ctx)
				if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
					t.Errorf("drop schema %s: %v", schema, err)
				}
			})
			return withSearchPath(t, dsn, schema)
		},
		Open: func(ctx context.Context, dsn string, opts store.Options) (store.Store, error) {
			return store.OpenPostgres(ctx, dsn, opts)
		},
	}
}

// withSearchPath adds search_path=schema to a URL or key=value DSN. pgx
// sends unknown DSN settings to the server as run-time parameters.
func withSearchPath(t testing.TB, dsn, schema string) string {
	if !strings.Contains(dsn, "://") {
		return dsn + " search_path=" + schema
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", postgresDSNVar, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestPostgresConformance(t *testing.T) { storetest.Run(t, postgresBackend(t)) }

func BenchmarkPostgresAcquireRelease(b *testing.B) {
	storetest.BenchmarkAcquireRelease(b, postgresBackend(b))
}

func TestPostgresAuditAppendOnly(t *testing.T) {
	backend := postgresBackend(t)
	ctx := context.Background()
	dsn := backend.NewDatabase(t)
	s, err := backend.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if _, err := s.AppendAudit(ctx, store.AuditEvent{Event: "test"}); err != nil {
		t.Fatalf("append audit: %v", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{"UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"} {
		_, err := conn.Exec(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v; want the append-only error", stmt, err)
		}
	}
}

func TestPostgresRejectsBadDSN(t *testing.T) {
	_, err := store.OpenPostgres(context.Background(), "postgres://%zz", store.Options{})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("open bad DSN: got %v; want ErrInvalid", err)
	}
}
