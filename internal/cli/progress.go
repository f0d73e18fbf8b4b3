package cli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress shows lifecycle steps on stderr: a live line that rewrites itself on
// a terminal, and plain timestamped lines elsewhere, such as in CI logs.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	now  func() time.Time
	last string
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, now: time.Now}
}

// Step shows msg as the current step.
func (p *progress) Step(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		// \r returns to the line start and \x1b[K clears the rest of it.
		fmt.Fprintf(p.w, "\r\x1b[K» %s", msg)
		p.last = msg
		return
	}
	fmt.Fprintf(p.w, "%s %s\n", p.now().UTC().Format(time.RFC3339), msg)
}

// Done ends the live line so that later output starts on a fresh line.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprintf(p.w, "\r\x1b[K✓ %s\n", p.last)
		p.last = ""
	}
}
