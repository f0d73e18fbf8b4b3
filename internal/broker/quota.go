package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/lifecycle"
)

// quotaTTL is how long a subscription's role assignment count is reused.
// Counting lists every assignment in the subscription, too slow to repeat
// for each request at the broker's rates.
const quotaTTL = time.Minute

// quotaCache checks requests against each subscription's role assignment
// quota with a count taken at most quotaTTL ago. Every request that passes
// adds what it needs to the cached count until the next count, so a burst
// of requests between counts cannot overrun the quota unseen.
type quotaCache struct {
	count func(ctx context.Context, sub string) (int, error)
	now   func() time.Time
	log   *slog.Logger

	mu      sync.Mutex
	entries map[string]quotaEntry
}

type quotaEntry struct {
	used    int
	counted time.Time
}

func newQuotaCache(count func(context.Context, string) (int, error), now func() time.Time, log *slog.Logger) *quotaCache {
	return &quotaCache{count: count, now: now, log: log, entries: map[string]quotaEntry{}}
}

// check returns one quota check per subscription that req's pairs touch.
// A count that fails gives a warning, as in the CLI's pre-flight, and is
// retried on the next request.
func (q *quotaCache) check(ctx context.Context, req access.Request) []lifecycle.Check {
	need := map[string]int{}
	var subs []string
	for _, p := range req.Pairs {
		sub := p.Scope.SubscriptionID()
		if sub == "" {
			continue
		}
		if need[sub] == 0 {
			subs = append(subs, sub)
		}
		need[sub]++
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var checks []lifecycle.Check
	for _, sub := range subs {
		e, ok := q.entries[sub]
		if !ok || q.now().Sub(e.counted) >= quotaTTL {
			n, err := q.count(ctx, sub)
			if err != nil {
				q.log.WarnContext(ctx, "count role assignments failed", "request_id", req.ID, "subscription", sub, "error", err)
				checks = append(checks, lifecycle.Check{Name: lifecycle.CheckQuota, Scope: "/subscriptions/" + sub, Warning: true,
					Detail: "could not count role assignments: " + err.Error()})
				continue
			}
			e = quotaEntry{used: n, counted: q.now()}
		}
		c := lifecycle.QuotaCheck(sub, e.used, need[sub])
		if c.OK {
			e.used += need[sub]
		}
		q.entries[sub] = e
		checks = append(checks, c)
	}
	return checks
}
