package webui

import (
	"context"
	"sync"

	"github.com/elevate-dev/elevate/internal/access"
	"github.com/elevate-dev/elevate/internal/approval"
	"github.com/elevate-dev/elevate/internal/broker"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/store"
)

// maxCachedTables bounds tableSource's cache. A table never changes for a
// given request id and hash, so entries never go stale.
const maxCachedTables = 1024

// tableSource builds approval tables of stored requests, with role and
// resource names looked up in Azure, and caches them.
type tableSource struct {
	engine *lifecycle.Engine // nil shows ids in place of names

	mu     sync.Mutex
	tables map[string]approval.Table
}

func newTableSource(engine *lifecycle.Engine) *tableSource {
	return &tableSource{engine: engine, tables: map[string]approval.Table{}}
}

// table returns the approval table of r. It fails when the stored fields no
// longer hash to the stored hash, because then the table would not be what
// an approval binds to.
func (t *tableSource) table(ctx context.Context, r store.Request) (approval.Table, error) {
	key := r.ID + "/" + r.Hash
	t.mu.Lock()
	cached, ok := t.tables[key]
	t.mu.Unlock()
	if ok {
		return cached, nil
	}
	req, err := broker.AccessRequest(r)
	if err != nil {
		return approval.Table{}, err
	}
	table := approval.NewTable(req, r.Backend)
	if t.engine != nil {
		table = t.describe(ctx, req)
		table.Backend = r.Backend
	}
	t.mu.Lock()
	if len(t.tables) >= maxCachedTables {
		clear(t.tables)
	}
	t.tables[key] = table
	t.mu.Unlock()
	return table, nil
}

// describe resolves names. A failed role lookup keeps the ids, with a
// warning on every row, instead of failing the page.
func (t *tableSource) describe(ctx context.Context, req access.Request) approval.Table {
	refs := make([]access.RoleRef, len(req.Pairs))
	scopes := make([]access.ResourceID, len(req.Pairs))
	for i, p := range req.Pairs {
		refs[i] = access.RoleRef{GUID: p.RoleID}
		scopes[i] = p.Scope
	}
	resolved, err := t.engine.ResolveRoles(ctx, refs, lifecycle.LookupScope(scopes))
	roles := make(map[string]lifecycle.Role, len(resolved))
	if err == nil {
		for _, role := range resolved {
			roles[role.GUID] = role
		}
	}
	table := t.engine.Describe(ctx, req, roles)
	if err != nil {
		for i := range table.Rows {
			table.Rows[i].Warning = "role name lookup failed: " + err.Error()
		}
	}
	return table
}
