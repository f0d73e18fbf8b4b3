package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// Options configure a Log. The zero value is ready to use.
type Options struct {
	// Now returns the record time. It defaults to time.Now, and tests inject
	// a fixed clock.
	Now func() time.Time
}

// Log appends records to one audit file. It is safe for concurrent use by
// the goroutines of one process.
//
// NOTE: nothing locks the file against another process, so two processes
// appending to one file fork the chain. Give each process its own file.
type Log struct {
	mu     sync.Mutex
	file   *os.File
	path   string
	now    func() time.Time
	seq    int64  // seq of the last line written
	head   string // hash of the last line written
	broken error  // set when a write failed part way
}

// Open opens or creates the log at path with Options{}.
func Open(path string) (*Log, error) { return OpenWithOptions(path, Options{}) }

// OpenWithOptions opens the log at path for appending, creating it with mode
// 0600. It verifies the whole existing file first and continues its chain
// and seq. A file that fails verification is rejected, because appending
// would hide where the damage is.
func OpenWithOptions(path string, opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log %q: %w", path, err)
	}
	report, err := Verify(file)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("open audit log %q: %w; move the file aside and "+
			"investigate before appending", path, err)
	}
	return &Log{
		file: file,
		path: path,
		now:  opts.Now,
		seq:  int64(report.Records),
		head: report.Head,
	}, nil
}

// Path returns the file path the log writes to.
func (l *Log) Path() string { return l.path }

// Append fills r's Schema, Seq, Time and Prev, writes it as one line with a
// single write call, and syncs the file to disk before returning the record
// as written. After a failed write or sync the log rejects further appends,
// because the file may end in a partial line.
func (l *Log) Append(r Record) (Record, error) {
	if r.Event == "" {
		return Record{}, errors.New("append audit record: event is empty; set Record.Event")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.file == nil:
		return Record{}, fmt.Errorf("append %s record to %q: %w", r.Event, l.path, ErrClosed)
	case l.broken != nil:
		return Record{}, fmt.Errorf("append %s record to %q: an earlier write failed: %w", r.Event, l.path, l.broken)
	}

	r.Schema = SchemaVersion
	r.Seq = l.seq + 1
	r.Time = l.now().UTC()
	r.Prev = l.head
	body, err := json.Marshal(r)
	if err != nil {
		return Record{}, fmt.Errorf("encode %s record: %w", r.Event, err)
	}
	if len(body) > MaxLineBytes {
		return Record{}, fmt.Errorf("append %s record: line is %d bytes, more than the maximum of %d; "+
			"shorten Detail or Error", r.Event, len(body), MaxLineBytes)
	}

	line := append(body, '\n')
	if _, err := l.file.Write(line); err != nil {
		l.broken = err
		return Record{}, fmt.Errorf("write %s record to %q: %w", r.Event, l.path, err)
	}
	if err := l.file.Sync(); err != nil {
		l.broken = err
		return Record{}, fmt.Errorf("sync audit log %q: %w", l.path, err)
	}
	l.seq = r.Seq
	l.head = hashLine(body)
	return r, nil
}

// Head returns the hash of the last line written, "" for an empty log.
func (l *Log) Head() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Close closes the file. Later calls to Append return ErrClosed, and later
// calls to Close return nil.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	if err != nil {
		return fmt.Errorf("close audit log %q: %w", l.path, err)
	}
	return nil
}
