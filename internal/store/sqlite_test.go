package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elevate-dev/elevate/internal/store"
	"github.com/elevate-dev/elevate/internal/store/storetest"
)

var sqliteBackend = storetest.Backend{
	NewDatabase: func(t testing.TB) string { return filepath.Join(t.TempDir(), "elevate.db") },
	Open: func(ctx context.Context, path string, opts store.Options) (store.Store, error) {
		return store.OpenSQLite(ctx, path, opts)
	},
}

func TestSQLiteConformance(t *testing.T) { storetest.Run(t, sqliteBackend) }

func BenchmarkSQLiteAcquireRelease(b *testing.B) {
	storetest.BenchmarkAcquireRelease(b, sqliteBackend)
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "elevate.db")
	s, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if _, err := s.AppendAudit(ctx, store.AuditEvent{Event: "test"}); err != nil {
		t.Fatalf("append audit: %v", err)
	}

	// A second, plain connection reads what the store configured.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open raw: %v", err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v; want wal", mode, err)
	}
	_, err = db.Exec("UPDATE audit_events SET actor = 'x'")
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("update audit_events: got %v; want the append-only error", err)
	}
	_, err = db.Exec("DELETE FROM audit_events")
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("delete audit_events: got %v; want the append-only error", err)
	}
}

func TestSQLiteRejectsMemoryPath(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		_, err := store.OpenSQLite(context.Background(), path, store.Options{})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("open %q: got %v; want ErrInvalid", path, err)
		}
	}
}
