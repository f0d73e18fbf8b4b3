package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/elevate-dev/elevate/internal/store"
)

// notificationNamespace is the UUIDv5 namespace of the notification ids
// that Expand derives. Changing it gives an event that is expanded again
// across an upgrade new ids, so its notifications would be sent twice.
var notificationNamespace = uuid.MustParse("3f6b2d94-7c1e-4a85-b0d3-9e52a7c4f168")

// NotificationID returns the outbox id of the notification of event
// message eventID for sink. Expanding the same event again yields the same
// ids, which the store keeps only once.
func NotificationID(eventID, sink string) string {
	return uuid.NewSHA1(notificationNamespace, []byte(eventID+"\n"+sink)).String()
}

// Expand enqueues one notification per sink that ev is routed to, for the
// event message eventID that the store wrote with the request's state
// change. Each notification id comes from NotificationID and the store
// ignores an id it has, so expanding an event again after a crash adds
// nothing. The messages show the request as stored now, with the state
// that the event set.
//
// It returns an error when the request cannot be read or an enqueue
// fails. The Dispatcher then retries the event with its backoff.
func (n *Notifier) Expand(ctx context.Context, eventID string, ev store.EventPayload) error {
	r, err := n.o.Store.GetRequest(ctx, ev.RequestID)
	if err != nil {
		return fmt.Errorf("expand %s event: read request: %w", ev.Event, err)
	}
	if ev.State != "" {
		r.State = ev.State
	}
	sinks := n.route(ev.Event, r)
	if len(sinks) == 0 {
		return nil
	}
	note := Notification{Event: ev.Event, Time: ev.Time.UTC(), Request: n.summary(ctx, ev.Event, r)}
	var errs []error
	for _, sink := range sinks {
		note.Sink = sink
		payload, err := json.Marshal(note)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode notification for sink %q: %w", sink, err))
			continue
		}
		created, err := n.o.Store.EnqueueOnce(ctx, NotificationID(eventID, sink), KindNotification, payload)
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %q: %w", sink, err))
			continue
		}
		if !created {
			n.o.Logger.InfoContext(ctx, "notification enqueued by an earlier expansion; kept as it was",
				"request_id", r.ID, "event", ev.Event, "sink", sink, "event_message_id", eventID)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("expand %s event of request %q: %w", ev.Event, r.ID, err)
	}
	return nil
}
