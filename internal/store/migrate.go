package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds the schema of each dialect as numbered SQL files,
// migrations/<dialect>/NNNN_name.sql. A new migration is a new file with the
// next number in both folders; applied files never change.
//
//go:embed migrations
var migrationFiles embed.FS

type migrationFile struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the migrations of dialect in version order.
func loadMigrations(dialect string) ([]migrationFile, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations %q: %w", dir, err)
	}
	var out []migrationFile
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok {
			continue
		}
		number, name, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(number)
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("migration file %q: name must start with a positive number, as in 0002_add_index.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, migrationFile{version: version, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("two %s migrations have version %d", dialect, out[i].version)
		}
	}
	return out, nil
}

// migrate applies, in one transaction, the migrations of dialect that
// schema_migrations does not list. On PostgreSQL an advisory lock makes
// replicas that start together apply them once.
func migrate(ctx context.Context, e engine, dialect, timeType string, now time.Time, log *slog.Logger) error {
	files, err := loadMigrations(dialect)
	if err != nil {
		return err
	}
	return e.inTx(ctx, func(q querier) error {
		if lock := e.migrationLock(); lock != "" {
			if _, err := q.exec(ctx, lock); err != nil {
				return fmt.Errorf("take migration lock: %w", err)
			}
		}
		_, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at `+timeType+` NOT NULL)`)
		if err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		applied, err := listMigrations(ctx, q)
		if err != nil {
			return err
		}
		done := make(map[int]bool, len(applied))
		for _, m := range applied {
			done[m.Version] = true
		}
		for _, f := range files {
			if done[f.version] {
				continue
			}
			if _, err := q.exec(ctx, f.sql); err != nil {
				return fmt.Errorf("apply %s migration %d %q: %w", dialect, f.version, f.name, err)
			}
			_, err := q.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				f.version, f.name, now)
			if err != nil {
				return fmt.Errorf("record %s migration %d: %w", dialect, f.version, err)
			}
			log.Info("applied schema migration", "dialect", dialect, "version", f.version, "name", f.name)
		}
		return nil
	})
}

func listMigrations(ctx context.Context, q querier) ([]Migration, error) {
	ms, err := queryAll(ctx, q, func(r rowScanner) (Migration, error) {
		var m Migration
		err := r.Scan(&m.Version, &m.Name, &m.AppliedAt)
		return m, err
	}, `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("list schema migrations: %w", err)
	}
	return ms, nil
}
