package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

const requestColumns = `id, COALESCE(idempotency_key, ''), requester, claims, principal_id,
	principal_type, pairs, justification, duration_ns, metadata, request_hash, backend,
	decision, state, created_at, updated_at, approval_deadline, granted_at, expires_at,
	ended_at, error, version`

func scanRequest(row rowScanner) (Request, error) {
	var r Request
	var claims, pairs, metadata, decision string
	var durationNs int64
	err := row.Scan(&r.ID, &r.IdempotencyKey, &r.Requester, &claims, &r.Principal.ID,
		&r.Principal.Type, &pairs, &r.Justification, &durationNs, &metadata, &r.Hash,
		&r.Backend, &decision, &r.State, &r.CreatedAt, &r.UpdatedAt, &r.ApprovalDeadline,
		&r.GrantedAt, &r.ExpiresAt, &r.EndedAt, &r.Error, &r.Version)
	if err != nil {
		return Request{}, err
	}
	r.Duration = time.Duration(durationNs)
	for _, f := range []struct {
		name string
		text string
		into any
	}{
		{"claims", claims, &r.Claims},
		{"pairs", pairs, &r.Pairs},
		{"metadata", metadata, &r.Metadata},
		{"decision", decision, &r.Decision},
	} {
		if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
			return Request{}, fmt.Errorf("decode %s of request %q: %w", f.name, r.ID, err)
		}
	}
	return r, nil
}

// checkNewRequest validates r and fills the defaults CreateRequest applies.
func checkNewRequest(r *Request) error {
	if r.ID == "" {
		r.ID = uuid.NewString()
	} else if _, err := uuid.Parse(r.ID); err != nil {
		return fmt.Errorf("invalid request id %q: not a UUID: %w", r.ID, ErrInvalid)
	}
	if r.State == "" {
		r.State = RequestPending
	}
	switch {
	case r.State != RequestPending:
		return fmt.Errorf("invalid initial state %q for request %q; create it pending and transition it: %w", r.State, r.ID, ErrInvalid)
	case r.Requester == "":
		return fmt.Errorf("missing requester of request %q: %w", r.ID, ErrInvalid)
	case r.Principal.ID == "":
		return fmt.Errorf("missing principal id of request %q: %w", r.ID, ErrInvalid)
	case len(r.Pairs) == 0:
		return fmt.Errorf("request %q has no pairs; give at least one role and scope: %w", r.ID, ErrInvalid)
	case r.Hash == "":
		return fmt.Errorf("missing hash of request %q; approvals bind to it: %w", r.ID, ErrInvalid)
	case r.Duration <= 0:
		return fmt.Errorf("invalid duration %s of request %q; give a positive duration: %w", r.Duration, r.ID, ErrInvalid)
	}
	for i, p := range r.Pairs {
		if p.RoleID == "" || p.Scope == "" {
			return fmt.Errorf("pair %d of request %q lacks a role or scope: %w", i, r.ID, ErrInvalid)
		}
	}
	if r.Claims == nil {
		r.Claims = map[string]string{}
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	return nil
}

func (s *sqlStore) CreateRequest(ctx context.Context, r Request) (Request, bool, error) {
	if err := checkNewRequest(&r); err != nil {
		return Request{}, false, fmt.Errorf("create request: %w", err)
	}
	now := s.now()
	r.CreatedAt, r.UpdatedAt, r.Version = now, now, 1
	r.ApprovalDeadline, r.GrantedAt = utc(r.ApprovalDeadline), utc(r.GrantedAt)
	r.ExpiresAt, r.EndedAt = utc(r.ExpiresAt), utc(r.EndedAt)

	// Two racing creates with one key: the loser's INSERT fails on the
	// unique key, and its second attempt finds the winner's row.
	var stored Request
	created := false
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		err = s.e.inTx(ctx, func(q querier) error {
			var txErr error
			stored, created, txErr = s.createRequestTx(ctx, q, r)
			return txErr
		})
		if !errors.Is(err, errUnique) || r.IdempotencyKey == "" {
			break
		}
	}
	switch {
	case errors.Is(err, errUnique):
		return Request{}, false, fmt.Errorf("create request %q: id exists already: %w", r.ID, ErrDuplicate)
	case err != nil:
		return Request{}, false, fmt.Errorf("create request %q: %w", r.ID, err)
	}
	return stored, created, nil
}

func (s *sqlStore) createRequestTx(ctx context.Context, q querier, r Request) (Request, bool, error) {
	if r.IdempotencyKey != "" {
		var existing Request
		err := queryOne(ctx, q, func(row rowScanner) (err error) {
			existing, err = scanRequest(row)
			return err
		}, `SELECT `+requestColumns+` FROM requests WHERE requester = $1 AND idempotency_key = $2`,
			r.Requester, r.IdempotencyKey)
		switch {
		case err == nil && (existing.Hash != r.Hash || existing.Backend != r.Backend):
			return Request{}, false, fmt.Errorf("idempotency key %q was used for request %q with other content; "+
				"use a new key: %w", r.IdempotencyKey, existing.ID, ErrConflict)
		case err == nil:
			return existing, false, nil
		case !errors.Is(err, errNoRows):
			return Request{}, false, err
		}
	}

	var key any
	if r.IdempotencyKey != "" {
		key = r.IdempotencyKey
	}
	jsons, err := marshalAll(r.Claims, r.Pairs, r.Metadata, r.Decision)
	if err != nil {
		return Request{}, false, err
	}
	_, err = q.exec(ctx, `INSERT INTO requests (id, idempotency_key, requester, claims,
		principal_id, principal_type, pairs, justification, duration_ns, metadata,
		request_hash, backend, decision, state, created_at, updated_at, approval_deadline,
		granted_at, expires_at, ended_at, error, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
		$17, $18, $19, $20, $21, $22)`,
		r.ID, key, r.Requester, jsons[0], r.Principal.ID, r.Principal.Type, jsons[1],
		r.Justification, int64(r.Duration), jsons[2], r.Hash, r.Backend, jsons[3],
		string(r.State), r.CreatedAt, r.UpdatedAt, r.ApprovalDeadline, r.GrantedAt,
		r.ExpiresAt, r.EndedAt, r.Error, r.Version)
	if err != nil {
		return Request{}, false, err
	}
	for i, p := range r.Pairs {
		_, err := q.exec(ctx, `INSERT INTO request_pairs (request_id, ordinal, role_id, scope_key)
			VALUES ($1, $2, $3, $4)`, r.ID, i, strings.ToLower(p.RoleID), strings.ToLower(p.Scope))
		if err != nil {
			return Request{}, false, fmt.Errorf("insert pair %d: %w", i, err)
		}
	}
	if r.CreateEvent != "" {
		if err := insertEvent(ctx, q, r.ID, r.CreateEvent, r.State, r.CreatedAt); err != nil {
			return Request{}, false, err
		}
	}
	r.CreateEvent = ""
	return r, true, nil
}

// marshalAll encodes each value as JSON text.
func marshalAll(values ...any) ([]string, error) {
	out := make([]string, len(values))
	for i, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", v, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

func (s *sqlStore) GetRequest(ctx context.Context, id string) (Request, error) {
	r, err := getRequest(ctx, s.e, id, "")
	if err != nil {
		return Request{}, notFoundOr(err, fmt.Sprintf("get request %q", id))
	}
	return r, nil
}

func getRequest(ctx context.Context, q querier, id, lock string) (Request, error) {
	var r Request
	err := queryOne(ctx, q, func(row rowScanner) (err error) {
		r, err = scanRequest(row)
		return err
	}, `SELECT `+requestColumns+` FROM requests WHERE id = $1 `+lock, id)
	return r, err
}

func (s *sqlStore) ListRequests(ctx context.Context, f RequestFilter) (RequestPage, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return RequestPage{}, fmt.Errorf("list requests: invalid limit %d; give 1 to %d: %w", f.Limit, MaxListLimit, ErrInvalid)
	}
	where, args, err := requestConditions(f)
	if err != nil {
		return RequestPage{}, fmt.Errorf("list requests: %w", err)
	}
	args = append(args, limit+1)
	query := `SELECT ` + requestColumns + ` FROM requests` + where +
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	requests, err := queryAll(ctx, s.e, scanRequest, query, args...)
	if err != nil {
		return RequestPage{}, fmt.Errorf("list requests: %w", err)
	}
	page := RequestPage{Requests: requests}
	if len(requests) > limit {
		page.Requests = requests[:limit]
		last := page.Requests[limit-1]
		page.Next = encodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}

// requestConditions builds the WHERE clause of ListRequests.
func requestConditions(f RequestFilter) (string, []any, error) {
	if err := checkFilterText(f); err != nil {
		return "", nil, err
	}
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.States) > 0 {
		var marks string
		marks, args = placeholders(args, f.States)
		conds = append(conds, "state IN ("+marks+")")
	}

	if f.Requester != "" {
		conds = append(conds, "requester = "+arg(f.Requester))
	}
	if f.PrincipalID != "" {
		conds = append(conds, "principal_id = "+arg(f.PrincipalID))
	}

	if f.RoleID != "" {
		conds = append(conds, "EXISTS (SELECT 1 FROM request_pairs p WHERE p.request_id = requests.id AND p.role_id = "+
			arg(strings.ToLower(f.RoleID))+")")
	}
	if f.ScopePrefix != "" {
		pattern := escapeLike(strings.ToLower(f.ScopePrefix)) + "%"
		conds = append(conds, "EXISTS (SELECT 1 FROM request_pairs p WHERE p.request_id = requests.id AND p.scope_key LIKE "+
			arg(pattern)+` ESCAPE '\')`)
	}

	if !f.CreatedAfter.IsZero() {
		conds = append(conds, "created_at >= "+arg(utc(f.CreatedAfter)))
	}
	if !f.CreatedBefore.IsZero() {
		conds = append(conds, "created_at < "+arg(utc(f.CreatedBefore)))
	}

	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, err
		}
		t, i := arg(at), arg(id)
		conds = append(conds, "(created_at < "+t+" OR (created_at = "+t+" AND id < "+i+"))")
	}

	if len(conds) == 0 {
		return "", args, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// checkFilterText rejects filter text that no stored value can equal:
// invalid UTF-8 or a NUL character. PostgreSQL rejects such text as a
// parameter with a server error, but the client sent it, so it gets
// ErrInvalid on either engine.
func checkFilterText(f RequestFilter) error {
	fields := [][2]string{{"requester", f.Requester}, {"principal id", f.PrincipalID},
		{"role id", f.RoleID}, {"scope prefix", f.ScopePrefix}}
	for _, s := range f.States {
		fields = append(fields, [2]string{"state", string(s)})
	}
	for _, field := range fields {
		if !storableText(field[1]) {
			return fmt.Errorf("invalid %s filter %q: use UTF-8 text without NUL characters: %w", field[0], field[1], ErrInvalid)
		}
	}
	return nil
}

// storableText reports whether both engines can take s as text.
func storableText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// escapeLike escapes the LIKE wildcards in s with backslashes.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// encodeCursor returns an opaque cursor after (createdAt, id), the sort key
// of the last request on a page.
func encodeCursor(createdAt time.Time, id string) string {
	raw := strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(cursor string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		micros, id, ok := strings.Cut(string(raw), ":")
		n, perr := strconv.ParseInt(micros, 10, 64)
		if ok && perr == nil && id != "" && storableText(id) {
			return time.UnixMicro(n).UTC(), id, nil
		}
	}
	return time.Time{}, "", fmt.Errorf("invalid cursor %q; pass RequestPage.Next unchanged: %w", cursor, ErrInvalid)
}

func (s *sqlStore) TransitionRequest(ctx context.Context, id string, from []RequestState, to RequestState, u RequestUpdate) (Request, error) {
	what := fmt.Sprintf("transition request %q to %s", id, to)
	if err := checkEdges(from, to, RequestState.CanTransition); err != nil {
		return Request{}, fmt.Errorf("%s: %w", what, err)
	}
	now := s.now()
	endedAt := utc(u.EndedAt)
	if endedAt.IsZero() && to.Terminal() {
		endedAt = now
	}
	var decision, errText any
	if u.Decision != nil {
		b, err := json.Marshal(u.Decision)
		if err != nil {
			return Request{}, fmt.Errorf("%s: encode decision: %w", what, err)
		}
		decision = string(b)
	}
	if u.Error != nil {
		errText = *u.Error
	}
	args := []any{string(to), now, decision, utc(u.ApprovalDeadline), utc(u.GrantedAt),
		utc(u.ExpiresAt), endedAt, errText, id}
	marks, args := placeholders(args, from)
	query := `UPDATE requests SET state = $1, updated_at = $2, version = version + 1,
		decision = COALESCE($3, decision),
		approval_deadline = COALESCE($4, approval_deadline),
		granted_at = COALESCE($5, granted_at),
		expires_at = COALESCE($6, expires_at),
		ended_at = COALESCE($7, ended_at),
		error = COALESCE($8, error)
		WHERE id = $9 AND state IN (` + marks + `)
		RETURNING ` + requestColumns

	var r Request
	err := s.e.inTx(ctx, func(q querier) error {
		err := queryOne(ctx, q, func(row rowScanner) (err error) {
			r, err = scanRequest(row)
			return err
		}, query, args...)
		if err != nil || u.Event == "" {
			return err
		}
		return insertEvent(ctx, q, id, u.Event, to, now)
	})
	if errors.Is(err, errNoRows) {
		return Request{}, s.explainMiss(ctx, what, id, from)
	}
	if err != nil {
		return Request{}, fmt.Errorf("%s: %w", what, err)
	}
	return r, nil
}

// explainMiss returns ErrNotFound for a missing request and ErrConflict
// for one in another state, after a conditional update matched no row.
func (s *sqlStore) explainMiss(ctx context.Context, what, id string, from []RequestState) error {
	current, err := getRequest(ctx, s.e, id, "")
	if err != nil {
		return notFoundOr(err, what)
	}
	return fmt.Errorf("%s: request is %s, not %s: %w", what, current.State, joinStates(from), ErrConflict)
}

func joinStates[S ~string](states []S) string {
	parts := make([]string, len(states))
	for i, st := range states {
		parts[i] = string(st)
	}
	return strings.Join(parts, " or ")
}

func (s *sqlStore) AddApproval(ctx context.Context, a Approval) (Approval, error) {
	what := fmt.Sprintf("add approval of request %q by %q", a.RequestID, a.Approver)
	switch {
	case a.Approver == "":
		return Approval{}, fmt.Errorf("%s: missing approver: %w", what, ErrInvalid)
	case a.Verdict != VerdictApprove && a.Verdict != VerdictDeny:
		return Approval{}, fmt.Errorf("%s: invalid verdict %q; give approve or deny: %w", what, a.Verdict, ErrInvalid)
	case a.RequestHash == "":
		return Approval{}, fmt.Errorf("%s: missing request hash: %w", what, ErrInvalid)
	}
	if a.Groups == nil {
		a.Groups = []string{}
	}
	groups, err := json.Marshal(a.Groups)
	if err != nil {
		return Approval{}, fmt.Errorf("%s: encode groups: %w", what, err)
	}
	a.CreatedAt = s.now()

	err = s.e.inTx(ctx, func(q querier) error {
		// FOR SHARE lets approvals of one request run together while a
		// transition of the request waits for them, so no approval lands
		// after the request left pending.
		var state RequestState
		var hash string
		err := queryOne(ctx, q, func(row rowScanner) error {
			return row.Scan(&state, &hash)
		}, `SELECT state, request_hash FROM requests WHERE id = $1 `+s.e.lock("FOR SHARE"), a.RequestID)
		switch {
		case err != nil:
			return err
		case state != RequestPending:
			return fmt.Errorf("request is %s, not pending: %w", state, ErrConflict)
		case hash != a.RequestHash:
			return fmt.Errorf("approval is bound to hash %q but the request hash is %q; "+
				"show the reviewer the current request: %w", a.RequestHash, hash, ErrConflict)
		}
		_, err = q.exec(ctx, `INSERT INTO approvals (request_id, approver, groups, verdict, comment,
			request_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			a.RequestID, a.Approver, string(groups), a.Verdict, a.Comment, a.RequestHash, a.CreatedAt)
		return err
	})
	switch {
	case errors.Is(err, errUnique):
		return Approval{}, fmt.Errorf("%s: the approver has one already: %w", what, ErrDuplicate)
	case err != nil:
		return Approval{}, notFoundOr(err, what)
	}
	return a, nil
}

func (s *sqlStore) ListApprovals(ctx context.Context, requestID string) ([]Approval, error) {
	approvals, err := queryAll(ctx, s.e, func(row rowScanner) (Approval, error) {
		var a Approval
		var groups string
		err := row.Scan(&a.RequestID, &a.Approver, &groups, &a.Verdict, &a.Comment, &a.RequestHash, &a.CreatedAt)
		if err == nil {
			err = json.Unmarshal([]byte(groups), &a.Groups)
		}
		return a, err
	}, `SELECT request_id, approver, groups, verdict, comment, request_hash, created_at
		FROM approvals WHERE request_id = $1 ORDER BY created_at, approver`, requestID)
	if err != nil {
		return nil, fmt.Errorf("list approvals of request %q: %w", requestID, err)
	}
	return approvals, nil
}

// isOneOf reports whether s is in states.
func isOneOf[S comparable](s S, states ...S) bool { return slices.Contains(states, s) }
