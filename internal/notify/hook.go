package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// enqueueTimeout bounds the store writes of one event. The hook runs after
// the state change has committed, so it must finish even when the API call
// that caused it has been cancelled.
const enqueueTimeout = 5 * time.Second

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	Store store.Store
	// Config is the notify: section, checked by CheckAndSetDefaults.
	Config Config
	// BaseURL is the web UI's address (ui.base_url). Messages link to
	// BaseURL/requests/ID when it is set.
	BaseURL string
	// Describe, when set, returns the approval table rows of a request
	// with role names resolved. Default: rows with role ids only.
	Describe func(ctx context.Context, r store.Request) []Row
	Now      func() time.Time
	Logger   *slog.Logger
}

// Notifier turns broker events into outbox messages, one per sink that
// the event is routed to. Its Notify method is the broker's Config.Notify,
// and its Expand method is the Dispatcher's DispatcherOptions.Expand.
type Notifier struct {
	o NotifierOptions
}

// NewNotifier returns a Notifier. It sends nothing itself: a Dispatcher
// delivers what it enqueues.
func NewNotifier(o NotifierOptions) *Notifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return &Notifier{o: o}
}

// Notify enqueues event about r for every sink it is routed to. It is
// called right after the state change it reports. A failed enqueue is
// logged with the request id and event, because the hook cannot fail the
// change that has already committed.
//
// For revoke_failed the sweeper knows only the request id and the error,
// so a request without a state is read from the store first.
func (n *Notifier) Notify(ctx context.Context, event string, r store.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	log := n.o.Logger.With("request_id", r.ID, "event", event)
	if r.State == "" {
		stored, err := n.o.Store.GetRequest(ctx, r.ID)
		if err != nil {
			log.ErrorContext(ctx, "notification: read request failed; sending what the event carries", "error", err)
		} else {
			if r.Error != "" {
				stored.Error = r.Error
			}
			r = stored
		}
	}
	sinks := n.route(event, r)
	if len(sinks) == 0 {
		return
	}
	note := Notification{Event: event, Time: n.o.Now().UTC(), Request: n.summary(ctx, event, r)}
	for _, sink := range sinks {
		note.Sink = sink
		payload, err := json.Marshal(note)
		if err == nil {
			_, err = n.o.Store.Enqueue(ctx, KindNotification, payload)
		}
		if err != nil {
			log.ErrorContext(ctx, "notification lost: enqueue failed", "sink", sink, "error", err)
		}
	}
}

// route returns the names of the sinks that receive event about r. A
// sink with groups receives only requests whose approver or notify groups
// overlap them, except break-glass use, which every sink receives.
func (n *Notifier) route(event string, r store.Request) []string {
	groups := append(slices.Clone(r.Decision.Groups), r.Decision.NotifyGroups...)
	var names []string
	for _, s := range n.o.Config.Sinks {
		if len(s.Events) > 0 && !slices.Contains(s.Events, event) {
			continue
		}
		if event != EventBreakGlass && len(s.Groups) > 0 && !overlaps(s.Groups, groups) {
			continue
		}
		names = append(names, s.Name)
	}
	return names
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) {
				return true
			}
		}
	}
	return false
}

// summary snapshots what the messages show about r.
func (n *Notifier) summary(ctx context.Context, event string, r store.Request) Summary {
	s := Summary{
		ID: r.ID, State: string(r.State), Requester: r.Requester,
		PrincipalID: r.Principal.ID, PrincipalType: r.Principal.Type,
		Justification: r.Justification, Duration: r.Duration.String(),
		Outcome: r.Decision.Outcome, RuleID: r.Decision.RuleID, Groups: r.Decision.Groups,
		Approvals: r.Decision.RequiredApprovals, BreakGlass: r.Decision.BreakGlass,
		Metadata: r.Metadata, ExpiresAt: r.ExpiresAt, Error: r.Error,
	}
	if n.o.BaseURL != "" && r.ID != "" {
		s.URL = n.o.BaseURL + "/requests/" + url.PathEscape(r.ID)
	}
	if n.o.Describe != nil {
		s.Rows = n.o.Describe(ctx, r)
	}
	if s.Rows == nil {
		for _, p := range r.Pairs {
			s.Rows = append(s.Rows, Row{RoleID: p.RoleID, Scope: p.Scope})
		}
	}
	if event == EventApproved || event == EventDenied {
		approvals, err := n.o.Store.ListApprovals(ctx, r.ID)
		if err != nil {
			n.o.Logger.WarnContext(ctx, "notification: list approvals failed; reviews left out",
				"request_id", r.ID, "error", err)
		}
		for _, a := range approvals {
			s.Reviews = append(s.Reviews, Review{Reviewer: a.Approver, Verdict: a.Verdict})
		}
	}
	return s
}
