package webui

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/store"
)

// FuzzHistoryFilter parses the history page's form and lists requests
// with the result on a SQLite store. An accepted form must give a filter
// whose dates print back as the form's dates. The listing must succeed and
// contain exactly the stored requests the form selects, with From and To
// as whole UTC days.
func FuzzHistoryFilter(f *testing.F) {
	st, requests := historyFixture(f)

	f.Add("", "", "", "", "", "")
	f.Add("repo:contoso/payments:environment:production", readerRoleID, "/subscriptions/", "pending", "2026-03-02", "2026-03-02")
	f.Add("", strings.ToUpper(readerRoleID), "/SUBSCRIPTIONS/"+testSubscription+"/resourcegroups/rg_", "", "2026-03-01", "")
	f.Add("", "", "/subscriptions/%", "denied", "", "2026-03-01")
	f.Add("", "", "", "", "0000-01-01", "9999-12-31")
	f.Add("", "", "", "", "2026-02-30", "")
	f.Add("", "", "", "", "2026-3-02", "")
	f.Add("", "", "", "", "+2026-03-02", "2026-03-02T00:00:00Z")
	f.Add("", "", "", "Pending", "", "")
	f.Add("\x00", "\xff", "", "", "", "")

	f.Fuzz(func(t *testing.T, requester, role, scope, state, from, to string) {
		form := historyFilter{Requester: requester, Role: role, Scope: scope, State: state, From: from, To: to}
		sf, err := form.filter()
		if err != nil {
			var ue *userError
			if !errors.As(err, &ue) {
				t.Fatalf("filter error %v is not a userError", err)
			}
			return
		}
		checkFilterFields(t, form, sf)

		page, err := st.ListRequests(context.Background(), sf)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("ListRequests(%#v) error %v is not ErrInvalid", sf, err)
			}
			return
		}
		var want, got []string
		for _, r := range requests {
			if selects(sf, r) {
				want = append(want, r.ID)
			}
		}
		for _, r := range page.Requests {
			got = append(got, r.ID)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("history of %#v lists %v; want %v", form, got, want)
		}
	})
}

// checkFilterFields checks the store filter an accepted form gave.
func checkFilterFields(t *testing.T, form historyFilter, sf store.RequestFilter) {
	t.Helper()
	if sf.Requester != form.Requester || sf.ScopePrefix != form.Scope || sf.RoleID != strings.ToLower(form.Role) {
		t.Errorf("filter %#v does not carry the form %#v", sf, form)
	}
	if sf.Limit != maxListed {
		t.Errorf("filter limit = %d; want %d", sf.Limit, maxListed)
	}
	switch {
	case form.State == "" && len(sf.States) != 0:
		t.Errorf("filter states = %v for an empty state; want none", sf.States)
	case form.State != "" && (len(sf.States) != 1 || sf.States[0] != store.RequestState(form.State)):
		t.Errorf("filter states = %v; want [%s]", sf.States, form.State)
	case form.State != "" && !slices.Contains(store.RequestStates, sf.States[0]):
		t.Errorf("filter accepted the unknown state %q", form.State)
	}
	for _, d := range []struct {
		name, form string
		got        time.Time
		shift      time.Duration
	}{{"from", form.From, sf.CreatedAfter, 0}, {"to", form.To, sf.CreatedBefore, 24 * time.Hour}} {
		if d.form == "" {
			if !d.got.IsZero() {
				t.Errorf("%s time = %s for an empty %s; want none", d.name, d.got, d.name)
			}
			continue
		}
		day := d.got.Add(-d.shift)
		if day.Location() != time.UTC || !day.Equal(day.Truncate(24*time.Hour)) || day.Format(time.DateOnly) != d.form {
			t.Errorf("%s %q gave %s; want the start of that day in UTC, plus %s", d.name, d.form, d.got, d.shift)
		}
	}
}

// selects applies a store filter to r in Go: the filter fields the
// history form sets, as RequestFilter documents them.
func selects(sf store.RequestFilter, r store.Request) bool {
	if len(sf.States) > 0 && !slices.Contains(sf.States, r.State) {
		return false
	}
	if sf.Requester != "" && r.Requester != sf.Requester {
		return false
	}
	if sf.RoleID != "" && !slices.ContainsFunc(r.Pairs, func(p store.Pair) bool {
		return strings.EqualFold(p.RoleID, sf.RoleID)
	}) {
		return false
	}
	if sf.ScopePrefix != "" && !slices.ContainsFunc(r.Pairs, func(p store.Pair) bool {
		return strings.HasPrefix(strings.ToLower(p.Scope), strings.ToLower(sf.ScopePrefix))
	}) {
		return false
	}
	if !sf.CreatedAfter.IsZero() && r.CreatedAt.Before(sf.CreatedAfter) {
		return false
	}
	return sf.CreatedBefore.IsZero() || r.CreatedAt.Before(sf.CreatedBefore)
}

// historyFixture stores requests created around the edges of UTC days,
// one in year 1 and one in year 9999, with two requesters, two roles and
// scopes with LIKE wildcards in them.
func historyFixture(f *testing.F) (store.Store, []store.Request) {
	f.Helper()
	ctx := context.Background()
	clock := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.OpenSQLite(ctx, filepath.Join(f.TempDir(), "ui.db"),
		store.Options{Now: func() time.Time { return clock }, Logger: quiet})
	if err != nil {
		f.Fatalf("open store: %v", err)
	}
	f.Cleanup(func() { st.Close() })

	rg := "/subscriptions/" + testSubscription + "/resourceGroups/rg_App"
	times := []time.Time{
		time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 23, 59, 59, 999999000, time.UTC),
		time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	var requests []store.Request
	for i, at := range times {
		clock = at
		r := store.Request{
			ID:            uuid.NewSHA1(uuid.NameSpaceURL, []byte{byte(i)}).String(),
			Requester:     "repo:contoso/payments:environment:production",
			Principal:     store.Principal{ID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a801", Type: "ServicePrincipal"},
			Pairs:         []store.Pair{{RoleID: readerRoleID, Scope: rg}},
			Justification: "history fuzz fixture", Duration: 30 * time.Minute,
			Hash: "sha256:" + strings.Repeat("0", 63) + string(rune('0'+i)), Backend: "rbac",
			Decision: store.Decision{Outcome: store.OutcomeNeedsApproval, RuleID: "r", RequiredApprovals: 1},
		}
		if i%2 == 1 {
			r.Requester = "repo:contoso/web:ref:refs/heads/main"
			r.Pairs = []store.Pair{{RoleID: "B24988AC-6180-42A0-AB88-20F7382DD24C", Scope: rg + "/providers/Microsoft.KeyVault/vaults/kv%1"}}
		}
		stored, _, err := st.CreateRequest(ctx, r)
		if err != nil {
			f.Fatalf("create request %d: %v", i, err)
		}
		requests = append(requests, stored)
	}
	denied, err := st.TransitionRequest(ctx, requests[2].ID, []store.RequestState{store.RequestPending},
		store.RequestDenied, store.RequestUpdate{})
	if err != nil {
		f.Fatalf("deny request 2: %v", err)
	}
	requests[2] = denied
	return st, requests
}
