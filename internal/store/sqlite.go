package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeout is how long a connection waits for another process's
// write lock before failing with SQLITE_BUSY.
const sqliteBusyTimeout = 10 * time.Second

// OpenSQLite opens or creates the SQLite database file at path and applies
// pending migrations. The database runs in WAL mode, so readers do not block
// on the writer. Foreign keys are on, and synchronous=FULL syncs the WAL at
// each commit, so a committed grant intent survives a power loss that
// follows it.
//
// Writes are serialized: one write transaction at a time in this process,
// each started with BEGIN IMMEDIATE so it takes the database write lock at
// once (other processes wait up to busy_timeout). That single writer is
// what makes ClaimExpired safe without row locks. Several brokers on one
// SQLite file are not supported; use PostgreSQL for replicas.
func OpenSQLite(ctx context.Context, path string, opts Options) (Store, error) {
	opts = opts.withDefaults()
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("open sqlite store: path %q is not a file; give a file path such as /var/lib/elevate/elevate.db: %w", path, ErrInvalid)
	}
	query := url.Values{}
	query.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	query.Add("_pragma", "foreign_keys(1)")
	query.Add("_pragma", "journal_mode(WAL)")
	query.Add("_pragma", "synchronous(FULL)")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + query.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	e := &sqliteEngine{db: db, writer: make(chan struct{}, 1)}
	if err := e.ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	if err := migrate(ctx, e, "sqlite", "INTEGER", utc(opts.Now()), opts.Logger); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate sqlite store %q: %w", path, err)
	}
	return &sqlStore{e: e, opts: opts}, nil
}

// sqliteEngine runs statements through database/sql. Times are stored as
// INTEGER microseconds since the Unix epoch.
type sqliteEngine struct {
	db *sql.DB
	// writer is a one-slot semaphore held for the length of a write
	// transaction. Waiting here instead of in SQLite's busy handler keeps
	// writers of this process in order and away from SQLITE_BUSY.
	writer chan struct{}
}

func (e *sqliteEngine) lock(string) string    { return "" }
func (e *sqliteEngine) migrationLock() string { return "" }
func (e *sqliteEngine) ping(ctx context.Context) error {
	return e.db.PingContext(ctx)
}
func (e *sqliteEngine) close() error { return e.db.Close() }

func (e *sqliteEngine) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqliteExec(ctx, e.db, query, args)
}

func (e *sqliteEngine) query(ctx context.Context, query string, args ...any) (rowSet, error) {
	return sqliteQuery(ctx, e.db, query, args)
}

// inTx runs fn in a BEGIN IMMEDIATE transaction on one connection.
func (e *sqliteEngine) inTx(ctx context.Context, fn func(q querier) error) (err error) {
	select {
	case e.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.writer }()

	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return classifySQLite(fmt.Errorf("begin sqlite transaction: %w", err))
	}
	committed := false
	defer func() {
		if !committed {
			// A background context, because the caller's may be the reason
			// for the rollback and the connection must not go back to the
			// pool inside a transaction.
			if _, rbErr := conn.ExecContext(context.Background(), "ROLLBACK"); rbErr != nil {
				err = errors.Join(err, fmt.Errorf("roll back sqlite transaction: %w", rbErr))
			}
		}
	}()
	if err := fn(sqliteTx{conn}); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return classifySQLite(fmt.Errorf("commit sqlite transaction: %w", err))
	}
	committed = true
	return nil
}

// sqliteTx is a querier on the connection of an open transaction.
type sqliteTx struct{ conn *sql.Conn }

func (t sqliteTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqliteExec(ctx, t.conn, query, args)
}

func (t sqliteTx) query(ctx context.Context, query string, args ...any) (rowSet, error) {
	return sqliteQuery(ctx, t.conn, query, args)
}

// sqlRunner is the method set *sql.DB and *sql.Conn share.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func sqliteExec(ctx context.Context, r sqlRunner, query string, args []any) (int64, error) {
	res, err := r.ExecContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return 0, classifySQLite(err)
	}
	return res.RowsAffected()
}

func sqliteQuery(ctx context.Context, r sqlRunner, query string, args []any) (rowSet, error) {
	rows, err := r.QueryContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return nil, classifySQLite(err)
	}
	return sqliteRows{rows}, nil
}

// sqliteArgs converts time arguments to microseconds, and zero times to
// NULL.
func sqliteArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			if t.IsZero() {
				out[i] = nil
			} else {
				out[i] = t.UnixMicro()
			}
			continue
		}
		out[i] = a
	}
	return out
}

// sqliteRows scans INTEGER microsecond columns into *time.Time
// destinations, NULL as the zero time.
type sqliteRows struct{ rows *sql.Rows }

func (r sqliteRows) Next() bool { return r.rows.Next() }
func (r sqliteRows) Err() error { return classifySQLite(r.rows.Err()) }
func (r sqliteRows) Close()     { r.rows.Close() }
func (r sqliteRows) Scan(dest ...any) error {
	scan := make([]any, len(dest))
	micros := make(map[int]*sql.NullInt64)
	for i, d := range dest {
		if _, ok := d.(*time.Time); ok {
			n := new(sql.NullInt64)
			micros[i] = n
			scan[i] = n
			continue
		}
		scan[i] = d
	}
	if err := r.rows.Scan(scan...); err != nil {
		return err
	}
	for i, n := range micros {
		t := dest[i].(*time.Time)
		*t = time.Time{}
		if n.Valid {
			*t = time.UnixMicro(n.Int64).UTC()
		}
	}
	return nil
}

// classifySQLite tags constraint violations with errUnique or
// errForeignKey.
func classifySQLite(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return &driverError{class: errUnique, err: err}
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return &driverError{class: errForeignKey, err: err}
	}
	return err
}
