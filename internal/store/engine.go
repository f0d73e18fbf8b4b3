package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// querier runs statements on the pool or inside a transaction. Each backend
// converts time.Time arguments and *time.Time scan destinations to its own
// column types, with the zero time as NULL, and classifies driver errors.
// So the queries in this package are written once, in SQL both dialects
// accept, with $1-style placeholders.
type querier interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	query(ctx context.Context, query string, args ...any) (rowSet, error)
}

// rowSet is the subset of pgx.Rows and *sql.Rows the queries use.
type rowSet interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// rowScanner is one row to scan.
type rowScanner interface {
	Scan(dest ...any) error
}

// engine is one backend: SQLite or PostgreSQL.
type engine interface {
	querier
	// inTx runs fn in a write transaction and commits when fn returns nil.
	// It may run fn again after a serialization failure or deadlock, so fn
	// must have no effect outside the transaction.
	inTx(ctx context.Context, fn func(q querier) error) error
	// lock returns clause (such as "FOR UPDATE SKIP LOCKED") on a backend
	// with row locks and "" on SQLite, where a write transaction already
	// holds the lock of the whole database.
	lock(clause string) string
	// migrationLock returns a statement that serializes migrations across
	// processes, run first in the migration transaction, or "".
	migrationLock() string
	ping(ctx context.Context) error
	close() error
}

// Classes of driver errors the backends report.
var (
	errUnique     = errors.New("unique constraint violated")
	errForeignKey = errors.New("foreign key constraint violated")
	errNoRows     = errors.New("no rows")
)

// driverError is a driver error tagged with its class.
type driverError struct {
	class error
	err   error
}

func (e *driverError) Error() string   { return e.err.Error() }
func (e *driverError) Unwrap() []error { return []error{e.class, e.err} }

// queryOne runs query and scans its first row with scan. It returns
// errNoRows when there is none.
func queryOne(ctx context.Context, q querier, scan func(rowScanner) error, query string, args ...any) error {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return errNoRows
	}
	if err := scan(rows); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](ctx context.Context, q querier, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// placeholders returns "$n, $n+1, ..." for len(values) arguments and
// appends the values to args.
func placeholders[S ~string](args []any, values []S) (string, []any) {
	marks := make([]string, len(values))
	for i, v := range values {
		args = append(args, string(v))
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	return strings.Join(marks, ", "), args
}
