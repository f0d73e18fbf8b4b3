package emulator

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Config configures Start. The zero value is usable: every field has the
// default given in its comment.
type Config struct {
	Addr             string        // listen address; default "127.0.0.1:0"
	StateDir         string        // ca.pem is written here; default: a new temp dir, removed by Close
	Seed             Seed          // zero value means DefaultSeed()
	PropagationDelay time.Duration // RBAC changes (new and removed assignments) take effect after this
	ReplicationDelay time.Duration // principals with CreatedAt within this window are unknown to ARM (400 PrincipalNotFound)
	AssignmentLimit  int           // live role assignments per subscription; default 4000, as in Azure
	Faults           FaultConfig
	Now              func() time.Time // default time.Now
	Logger           *slog.Logger     // default discards
}

// DefaultAssignmentLimit is Azure's limit of role assignments per
// subscription.
const DefaultAssignmentLimit = 4000

// checkAndSetDefaults fills in defaults and rejects values Start cannot use.
func (c *Config) checkAndSetDefaults() error {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Seed.isZero() {
		c.Seed = DefaultSeed()
	}
	if c.PropagationDelay < 0 {
		return fmt.Errorf("invalid propagation delay %v: must not be negative", c.PropagationDelay)
	}
	if c.ReplicationDelay < 0 {
		return fmt.Errorf("invalid replication delay %v: must not be negative", c.ReplicationDelay)
	}
	if c.AssignmentLimit < 0 {
		return fmt.Errorf("invalid assignment limit %d: must not be negative", c.AssignmentLimit)
	}
	if c.AssignmentLimit == 0 {
		c.AssignmentLimit = DefaultAssignmentLimit
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}
