package webui

import (
	"context"
	"fmt"
	"html/template"
	"slices"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// dashboardDays is the window of the dashboard, ending today (UTC).
const dashboardDays = 14

// maxDashboardRequests bounds the requests one dashboard reads.
const maxDashboardRequests = 10_000

// dashboard is the dashboard page's content.
type dashboard struct {
	Days                      int
	Since                     time.Time
	Elevations, Denials       int
	MedianApproval            string
	MedianHeld                string
	FailedRequests            int
	FailedGrants              int
	Truncated                 bool
	ElevationsSVG, DenialsSVG template.HTML
	ApprovalSVG, HeldSVG      template.HTML
}

// stats computes the dashboard from the requests created in the window.
// It counts elevations (grants made) and denials per day. It takes the
// median time from request to the approval that completed it, and the
// median time a grant was held, until now for one still active.
func (u *UI) stats(ctx context.Context) (dashboard, error) {
	now := u.now().UTC()
	today := now.Truncate(24 * time.Hour)
	since := today.AddDate(0, 0, -(dashboardDays - 1))
	d := dashboard{Days: dashboardDays, Since: since}
	requests, truncated, err := u.windowRequests(ctx, since)
	if err != nil {
		return d, err
	}
	d.Truncated = truncated

	labels := make([]string, dashboardDays)
	for i := range labels {
		labels[i] = since.AddDate(0, 0, i).Format("01-02")
	}
	dayOf := func(t time.Time) int {
		if t.Before(since) {
			return -1
		}
		i := int(t.UTC().Sub(since) / (24 * time.Hour))
		if i >= dashboardDays {
			return -1
		}
		return i
	}
	elevations := make([]float64, dashboardDays)
	denials := make([]float64, dashboardDays)
	approvalByDay := make([][]time.Duration, dashboardDays)
	heldByDay := make([][]time.Duration, dashboardDays)
	var allApproval, allHeld []time.Duration
	for _, r := range requests {
		if r.State == store.RequestDenied {
			d.Denials++
			if i := dayOf(r.EndedAt); i >= 0 {
				denials[i]++
			}
		}
		if r.State == store.RequestRevokeFailed {
			d.FailedRequests++
		}
		if r.GrantedAt.IsZero() {
			continue
		}
		d.Elevations++
		i := dayOf(r.GrantedAt)
		if i >= 0 {
			elevations[i]++
		}
		end := r.EndedAt
		if end.IsZero() {
			end = now
		}
		held := end.Sub(r.GrantedAt)
		allHeld = append(allHeld, held)
		if i >= 0 {
			heldByDay[i] = append(heldByDay[i], held)
		}
		if r.Decision.Outcome != store.OutcomeNeedsApproval {
			continue
		}
		wait, ok, err := u.approvalWait(ctx, r)
		if err != nil {
			return d, err
		}
		if ok {
			allApproval = append(allApproval, wait)
			if i >= 0 {
				approvalByDay[i] = append(approvalByDay[i], wait)
			}
		}
	}
	if d.FailedGrants, err = u.failedGrantCount(ctx); err != nil {
		return d, err
	}
	d.MedianApproval = medianText(allApproval)
	d.MedianHeld = medianText(allHeld)
	d.ElevationsSVG = barChart{Title: "Elevations per day", Labels: labels, Values: elevations}.SVG()
	d.DenialsSVG = barChart{Title: "Denials per day", Labels: labels, Values: denials}.SVG()
	d.ApprovalSVG = barChart{Title: "Median time to approval per day", Unit: "min", Labels: labels, Values: minutesByDay(approvalByDay)}.SVG()
	d.HeldSVG = barChart{Title: "Median time held per day", Unit: "min", Labels: labels, Values: minutesByDay(heldByDay)}.SVG()
	return d, nil
}

// windowRequests lists the requests created since the start of the window.
func (u *UI) windowRequests(ctx context.Context, since time.Time) ([]store.Request, bool, error) {
	var out []store.Request
	f := store.RequestFilter{CreatedAfter: since, Limit: store.MaxListLimit}
	for {
		page, err := u.store.ListRequests(ctx, f)
		if err != nil {
			return nil, false, fmt.Errorf("list requests since %s: %w", since.Format(time.DateOnly), err)
		}
		out = append(out, page.Requests...)
		if page.Next == "" {
			return out, false, nil
		}
		if len(out) >= maxDashboardRequests {
			return out, true, nil
		}
		f.Cursor = page.Next
	}
}

// approvalWait is the time from the request to its latest approve verdict,
// which is the one that completed the approval.
func (u *UI) approvalWait(ctx context.Context, r store.Request) (time.Duration, bool, error) {
	approvals, err := u.store.ListApprovals(ctx, r.ID)
	if err != nil {
		return 0, false, fmt.Errorf("list approvals of request %s: %w", r.ID, err)
	}
	var last time.Time
	for _, a := range approvals {
		if a.Verdict == store.VerdictApprove && a.CreatedAt.After(last) {
			last = a.CreatedAt
		}
	}
	if last.IsZero() {
		return 0, false, nil
	}
	return last.Sub(r.CreatedAt), true, nil
}

func (u *UI) failedGrantCount(ctx context.Context) (int, error) {
	grants, err := u.store.NonTerminalGrants(ctx)
	if err != nil {
		return 0, fmt.Errorf("list grants: %w", err)
	}
	n := 0
	for _, g := range grants {
		if g.State == store.GrantRevokeFailed {
			n++
		}
	}
	return n, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianText(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no data"
	}
	return formatDuration(median(ds))
}

func minutesByDay(days [][]time.Duration) []float64 {
	out := make([]float64, len(days))
	for i, ds := range days {
		if len(ds) > 0 {
			out[i] = float64(median(ds).Round(6*time.Second)) / float64(time.Minute)
		}
	}
	return out
}
