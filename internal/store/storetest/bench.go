package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/elevate-dev/elevate/internal/store"
)

// BenchmarkAcquireRelease measures one AcquireGrant followed by the
// ReleaseLease that ends it, each on a new scope so every iteration creates
// a grant and moves it to revoking. It reports pairs per second.
func BenchmarkAcquireRelease(b *testing.B, backend Backend) {
	ctx := context.Background()
	clock := NewClock()
	s, err := backend.Open(ctx, backend.NewDatabase(b), store.Options{Now: clock.Now})
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	defer s.Close()
	r, _, err := s.CreateRequest(ctx, sampleRequest("bench"))
	if err != nil {
		b.Fatalf("create request: %v", err)
	}
	if _, err := s.TransitionRequest(ctx, r.ID, []store.RequestState{store.RequestPending}, store.RequestApproved, store.RequestUpdate{}); err != nil {
		b.Fatalf("approve: %v", err)
	}

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		acq, err := s.AcquireGrant(ctx, store.AcquireParams{
			RequestID:      r.ID,
			PrincipalID:    principalID,
			RoleID:         readerRole,
			Scope:          fmt.Sprintf("%s/providers/Microsoft.Storage/storageAccounts/sa%d", scopeA, i),
			AssignmentName: fmt.Sprintf("name-%d", i),
			LeaseExpiresAt: clock.Now().Add(time.Hour),
		})
		if err != nil {
			b.Fatalf("acquire: %v", err)
		}
		if _, err := s.ReleaseLease(ctx, acq.Lease.ID); err != nil {
			b.Fatalf("release: %v", err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
