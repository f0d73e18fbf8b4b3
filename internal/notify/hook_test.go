package notify

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// queued claims every due message and decodes the notifications.
func queued(t *testing.T, st store.Store) []Notification {
	t.Helper()
	msgs, err := st.ClaimDue(context.Background(), time.Now().Add(time.Second), 100, time.Minute)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	var out []Notification
	for _, m := range msgs {
		var n Notification
		if err := json.Unmarshal(m.Payload, &n); err != nil {
			t.Fatalf("decode %s: %v", m.Payload, err)
		}
		out = append(out, n)
	}
	return out
}

func sinkNames(ns []Notification) []string {
	var names []string
	for _, n := range ns {
		names = append(names, n.Sink)
	}
	sort.Strings(names)
	return names
}

func TestNotifyRoutesBySinkGroups(t *testing.T) {
	sinks := []SinkConfig{
		{Name: "all", Type: TypeSlack, URL: "https://h.example/a"},
		{Name: "platform", Type: TypeTeams, URL: "https://h.example/b", Groups: []string{"Platform"}},
		{Name: "data", Type: TypeSlack, URL: "https://h.example/c", Groups: []string{"data"}},
		{Name: "failures", Type: TypeSlack, URL: "https://h.example/d", Events: []string{EventRevokeFailed}},
	}
	tests := []struct {
		name   string
		event  string
		groups []string
		notify []string
		want   []string
	}{
		{"request to its group", EventRequest, []string{"platform"}, nil, []string{"all", "platform"}},
		{"notify groups count", EventGranted, []string{"platform"}, []string{"data"}, []string{"all", "data", "platform"}},
		{"break glass to every group", EventBreakGlass, nil, nil, []string{"all", "data", "platform"}},
		{"event filter applies", EventRevokeFailed, []string{"security"}, nil, []string{"all", "failures"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			n := NewNotifier(NotifierOptions{Store: st, Config: Config{Sinks: sinks}})
			r := hostile()
			r.Decision.Groups, r.Decision.NotifyGroups = tt.groups, tt.notify
			n.Notify(context.Background(), tt.event, r)
			if got := sinkNames(queued(t, st)); !slices.Equal(got, tt.want) {
				t.Errorf("sinks: got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestNotifyRevokeFailedReadsRequest(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	stored, _, err := st.CreateRequest(ctx, sampleRequest("revoke-failed", "platform"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	n := NewNotifier(NotifierOptions{Store: st, BaseURL: "https://elevate.example",
		Config: Config{Sinks: []SinkConfig{{Name: "p", Type: TypeSlack, URL: "https://h.example/p", Groups: []string{"platform"}}}}})
	// The sweeper passes only the id and the error.
	n.Notify(ctx, EventRevokeFailed, store.Request{ID: stored.ID, Error: "delete: 403"})

	got := queued(t, st)
	if len(got) != 1 {
		t.Fatalf("messages: got %d; want 1", len(got))
	}
	s := got[0].Request
	if s.Requester != stored.Requester || s.State != string(store.RequestPending) {
		t.Errorf("summary: got requester %q state %q; want the stored request's", s.Requester, s.State)
	}
	if s.Error != "delete: 403" {
		t.Errorf("error: got %q; want the sweeper's error", s.Error)
	}
	if s.URL != "https://elevate.example/requests/"+stored.ID {
		t.Errorf("url: got %q; want the request page", s.URL)
	}
}

func TestNotifyApprovedListsReviews(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r, _, err := st.CreateRequest(ctx, sampleRequest("approved", "platform"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := st.AddApproval(ctx, store.Approval{RequestID: r.ID, Approver: "user:alice@contoso.example",
		Verdict: store.VerdictApprove, RequestHash: r.Hash}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	n := NewNotifier(NotifierOptions{Store: st,
		Config: Config{Sinks: []SinkConfig{{Name: "p", Type: TypeSlack, URL: "https://h.example/p"}}}})
	n.Notify(ctx, EventApproved, r)
	got := queued(t, st)
	if len(got) != 1 {
		t.Fatalf("messages: got %d; want 1", len(got))
	}
	want := []Review{{Reviewer: "user:alice@contoso.example", Verdict: store.VerdictApprove}}
	if !slices.Equal(got[0].Request.Reviews, want) {
		t.Errorf("reviews: got %+v; want %+v", got[0].Request.Reviews, want)
	}
}

func TestNotifySurvivesCancelledContext(t *testing.T) {
	st := openStore(t)
	n := NewNotifier(NotifierOptions{Store: st,
		Config: Config{Sinks: []SinkConfig{{Name: "p", Type: TypeSlack, URL: "https://h.example/p"}}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Notify(ctx, EventGranted, hostile())
	if got := len(queued(t, st)); got != 1 {
		t.Errorf("messages after a cancelled API call: got %d; want 1", got)
	}
}
