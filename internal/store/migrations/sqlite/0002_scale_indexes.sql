-- Indexes for stores with many active leases. Without them, each of these
-- queries read every active row, so Create and the sweeper slowed down as
-- leases accumulated:
--   - AcquireGrant looks up the live grant of a principal, role and scope.
--     The partial index grants_live does not serve it, because the live
--     states arrive as parameters: SQLite scanned the active grants by
--     state, and a PostgreSQL generic plan scanned the whole table.
--   - ReleaseLease counts the active leases of one grant. SQLite chose
--     leases_expiry and scanned every active lease.
--   - ListRequests by state, newest first, which the sweeper runs for
--     pending requests. After ANALYZE, SQLite and a PostgreSQL generic plan
--     walked requests_created backwards through every request.
CREATE INDEX grants_pair ON grants (principal_id, role_id, scope_key);
CREATE INDEX leases_grant ON leases (grant_id, state);
CREATE INDEX requests_state_created ON requests (state, created_at, id);
