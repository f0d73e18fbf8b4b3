package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/elevate-dev/elevate/internal/store"
)

func TestAuditStreamCloudEvents(t *testing.T) {
	ctx := context.Background()
	raw := openStore(t)
	st := StreamAudit(raw, func() string { return "https://broker.example" }, nil)
	// Event 2 fails twice; events after it must wait for it.
	rc := newReceiver(t, func(n int, body []byte) int {
		seq, _ := auditSeq(body)
		if seq == 2 && n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusAccepted
	})
	var appended []store.AuditEvent
	for i := range 5 {
		e, err := st.AppendAudit(ctx, store.AuditEvent{RequestID: "req-1", Event: "grant", Actor: "broker",
			Detail: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		appended = append(appended, e)
	}
	cfg := fastConfig(t)
	cfg.AuditStream = &AuditStreamConfig{URLEnv: "AUDIT_URL", SecretEnv: "SECRET"}
	startDispatcher(t, DispatcherOptions{Store: raw, Config: cfg, Getenv: func(k string) string {
		return map[string]string{"AUDIT_URL": rc.URL, "SECRET": testSecret}[k]
	}})
	waitFor(t, "five events", func() bool { return len(rc.succeeded()) == 5 })

	for i, c := range rc.succeeded() {
		var ev CloudEvent
		if err := json.Unmarshal(c.body, &ev); err != nil {
			t.Fatalf("decode event %d: %v", i, err)
		}
		want := appended[i]
		if ev.ID != strconv.FormatInt(want.Seq, 10) {
			t.Errorf("delivery %d id: got %s; want seq %d, in order", i, ev.ID, want.Seq)
		}
		if ev.SpecVersion != "1.0" || ev.Source != "https://broker.example" || ev.Type != "dev.elevate.audit.grant" {
			t.Errorf("delivery %d attributes: got %s %s %s; want 1.0, the broker URL, dev.elevate.audit.grant",
				i, ev.SpecVersion, ev.Source, ev.Type)
		}
		if ev.DataContentType != "application/json" || !ev.Time.Equal(want.Time) {
			t.Errorf("delivery %d: got datacontenttype %q time %s; want application/json, %s", i, ev.DataContentType, ev.Time, want.Time)
		}
		if ev.Data.Hash != want.Hash || ev.Data.PrevHash != want.PrevHash {
			t.Errorf("delivery %d chain: got hash %s prev %s; want %s, %s", i, ev.Data.Hash, ev.Data.PrevHash, want.Hash, want.PrevHash)
		}
		if got := c.header.Get("Content-Type"); got != ContentTypeCloudEvents {
			t.Errorf("delivery %d Content-Type: got %q; want %q", i, got, ContentTypeCloudEvents)
		}
		if !Verify([]byte(testSecret), c.header.Get(HeaderTimestamp), c.body, c.header.Get(HeaderSignature)) {
			t.Errorf("delivery %d: signature does not verify", i)
		}
	}
	// Nothing after seq 2 was even tried before seq 2 succeeded.
	delivered2 := false
	for _, c := range rc.all() {
		seq, _ := auditSeq(c.body)
		if seq == 2 && c.status < 300 {
			delivered2 = true
		}
		if seq > 2 && !delivered2 {
			t.Errorf("event %d posted before event 2 was delivered", seq)
		}
	}
}

func TestAuditStreamPassesErrorsThrough(t *testing.T) {
	raw := openStore(t)
	st := StreamAudit(raw, func() string { return "https://broker.example" }, nil)
	raw.Close()
	if _, err := st.AppendAudit(context.Background(), store.AuditEvent{Event: "grant"}); err == nil {
		t.Errorf("append on a closed store: got nil error; want the store's error")
	}
}
