package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgMigrationLockKey is the pg_advisory_xact_lock key that serializes
// migrations of replicas starting at once. It is "elevate!" read as a
// big-endian 64-bit integer, so it is unlikely to collide with other users.
const pgMigrationLockKey = 0x656c657661746521

// pgMaxAttempts bounds how often inTx runs a transaction that failed with a
// serialization failure or a deadlock.
const pgMaxAttempts = 5

// OpenPostgres connects a pool to the PostgreSQL database at dsn (a URL or
// key=value string, as pgx parses it) and applies pending migrations.
//
// Transactions run at READ COMMITTED with explicit row locks rather than at
// SERIALIZABLE. Every state change is one conditional UPDATE, which
// PostgreSQL re-checks against the newest row version after waiting for a
// concurrent writer, so exactly one of two racing updates matches. Where a
// transaction reads before it writes, it locks the rows it reads: FOR
// UPDATE, or FOR SHARE for a request that approvals and grants depend on.
// The sweeper claims rows with FOR UPDATE SKIP LOCKED, so replicas split
// the work instead of waiting on each other. SERIALIZABLE would give the
// same guarantees but abort and retry under exactly the contention the
// sweeper creates. Deadlocks and serialization failures are still retried.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx errors here may repeat the DSN with its password, so the
		// message names only what to fix.
		return nil, fmt.Errorf("open postgres store: invalid DSN; give a URL such as postgres://user@host/db: %w", ErrInvalid)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store on %s: %w", cfg.ConnConfig.Host, err)
	}
	e := &pgEngine{pool: pool, logger: opts.Logger}
	if err := e.ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store on %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := migrate(ctx, e, "postgres", "TIMESTAMPTZ", utc(opts.Now()), opts.Logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate postgres store on %s: %w", cfg.ConnConfig.Host, err)
	}
	return &sqlStore{e: e, opts: opts}, nil
}

// pgEngine runs statements on a pgxpool.Pool.
type pgEngine struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

func (e *pgEngine) lock(clause string) string { return clause }
func (e *pgEngine) migrationLock() string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(pgMigrationLockKey))
}
func (e *pgEngine) ping(ctx context.Context) error { return e.pool.Ping(ctx) }
func (e *pgEngine) close() error                   { e.pool.Close(); return nil }

func (e *pgEngine) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return pgExec(ctx, e.pool, query, args)
}

func (e *pgEngine) query(ctx context.Context, query string, args ...any) (rowSet, error) {
	return pgQuery(ctx, e.pool, query, args)
}

// inTx runs fn in a READ COMMITTED transaction, again after a
// serialization failure or deadlock, up to pgMaxAttempts times.
func (e *pgEngine) inTx(ctx context.Context, fn func(q querier) error) error {
	var err error
	for attempt := 1; attempt <= pgMaxAttempts; attempt++ {
		err = e.runTx(ctx, fn)
		if !retryablePG(err) || ctx.Err() != nil {
			return err
		}
		delay := time.Duration(attempt) * 5 * time.Millisecond
		e.logger.Debug("retrying postgres transaction", "attempt", attempt, "delay", delay, "error", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("postgres transaction failed %d times: %w", pgMaxAttempts, err)
}

func (e *pgEngine) runTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := e.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return classifyPG(fmt.Errorf("begin postgres transaction: %w", err))
	}
	if err := fn(pgTx{tx}); err != nil {
		// Rollback errors are dropped: the transaction is aborted either
		// way, and fn's error is the cause.
		_ = tx.Rollback(context.Background())
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return classifyPG(fmt.Errorf("commit postgres transaction: %w", err))
	}
	return nil
}

// retryablePG reports whether err is a serialization failure (40001) or a
// deadlock (40P01), after which the whole transaction may run again.
func retryablePG(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return pgExec(ctx, t.tx, query, args)
}

func (t pgTx) query(ctx context.Context, query string, args ...any) (rowSet, error) {
	return pgQuery(ctx, t.tx, query, args)
}

// pgRunner is the method set *pgxpool.Pool and pgx.Tx share.
type pgRunner interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func pgExec(ctx context.Context, r pgRunner, query string, args []any) (int64, error) {
	tag, err := r.Exec(ctx, query, pgArgs(args)...)
	if err != nil {
		return 0, classifyPG(err)
	}
	return tag.RowsAffected(), nil
}

func pgQuery(ctx context.Context, r pgRunner, query string, args []any) (rowSet, error) {
	rows, err := r.Query(ctx, query, pgArgs(args)...)
	if err != nil {
		return nil, classifyPG(err)
	}
	return pgRows{rows}, nil
}

// pgArgs sends zero times as NULL and other times in UTC.
func pgArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			if t.IsZero() {
				out[i] = nil
			} else {
				out[i] = t.UTC()
			}
			continue
		}
		out[i] = a
	}
	return out
}

// pgRows scans nullable TIMESTAMPTZ columns into *time.Time destinations,
// NULL as the zero time.
type pgRows struct{ rows pgx.Rows }

func (r pgRows) Next() bool { return r.rows.Next() }
func (r pgRows) Err() error { return classifyPG(r.rows.Err()) }
func (r pgRows) Close()     { r.rows.Close() }
func (r pgRows) Scan(dest ...any) error {
	scan := make([]any, len(dest))
	stamps := make(map[int]*pgtype.Timestamptz)
	for i, d := range dest {
		if _, ok := d.(*time.Time); ok {
			ts := new(pgtype.Timestamptz)
			stamps[i] = ts
			scan[i] = ts
			continue
		}
		scan[i] = d
	}
	if err := r.rows.Scan(scan...); err != nil {
		return classifyPG(err)
	}
	for i, ts := range stamps {
		t := dest[i].(*time.Time)
		*t = time.Time{}
		if ts.Valid {
			*t = ts.Time.UTC()
		}
	}
	return nil
}

// classifyPG tags unique (23505) and foreign key (23503) violations.
func classifyPG(err error) error {
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case "23505":
		return &driverError{class: errUnique, err: err}
	case "23503":
		return &driverError{class: errForeignKey, err: err}
	}
	return err
}
