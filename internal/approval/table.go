// Package approval renders what an approver reviews: a table of the request
// facts and one row per role x scope pair, as Markdown for GitHub (step
// summaries, pull request comments, environment gates) and as JSON.
package approval

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/elevate-dev/elevate/internal/access"
)

// Row is one pair as shown to an approver, with display names resolved.
type Row struct {
	RoleName     string `json:"role_name"`
	RoleID       string `json:"role_id"` // role definition GUID
	ResourceName string `json:"resource_name"`
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	// Warning explains a failed name lookup, such as "role name lookup
	// failed: ...". The names then fall back to ids.
	Warning string `json:"warning,omitempty"`
}

// Table is the review page of one request, as shown to an approver.
type Table struct {
	RequestID     string
	PrincipalID   string
	PrincipalType string
	PrincipalName string
	Duration      time.Duration
	Justification string
	Ticket        string
	Metadata      access.Metadata
	Backend       string // grant backend, "rbac" for now
	Rows          []Row
}

// RowsFromPairs returns one row per pair with ids in place of display names,
// for callers that have not resolved names yet.
func RowsFromPairs(pairs []access.Pair) []Row {
	rows := make([]Row, len(pairs))
	for i, p := range pairs {
		rows[i] = Row{
			RoleName:     p.RoleID,
			RoleID:       p.RoleID,
			ResourceName: p.Scope.Name(),
			ResourceType: p.Scope.Type(),
			ResourceID:   p.Scope.String(),
		}
	}
	return rows
}

// NewTable returns the table of a request with rows from RowsFromPairs.
func NewTable(r access.Request, backend string) Table {
	return Table{
		RequestID:     r.ID,
		PrincipalID:   r.Principal.ID,
		PrincipalType: r.Principal.Type,
		Duration:      r.Duration,
		Justification: r.Justification,
		Ticket:        r.Metadata.Ticket,
		Metadata:      r.Metadata,
		Backend:       backend,
		Rows:          RowsFromPairs(r.Pairs),
	}
}

// Heading is the first line of Table.Markdown.
const Heading = "### Elevate access request"

// pairColumns are the column headers of the pairs table.
var pairColumns = []string{"#", "Role", "Role ID", "Resource", "Resource type", "Scope", "Warning"}

// Markdown renders the table as GitHub-flavoured Markdown: a heading, a
// two-column table of request facts, then a table with one row per pair.
// Every value goes through the cell escaping of EscapeCell, so the output
// has no raw '<' and every row has exactly its header's column count.
func (t Table) Markdown() string {
	var b strings.Builder
	b.WriteString(Heading + "\n\n")

	b.WriteString("| Field | Value |\n| --- | --- |\n")
	for _, fact := range t.facts() {
		fmt.Fprintf(&b, "| %s | %s |\n", fact[0], fact[1])
	}
	b.WriteString("\n")

	writeRow(&b, pairColumns)
	writeRow(&b, separatorRow(len(pairColumns)))
	for i, row := range t.Rows {
		writeRow(&b, []string{
			strconv.Itoa(i + 1),
			EscapeCell(orFallback(row.RoleName, row.RoleID)),
			escapeCell(row.RoleID, maxIDRunes),
			EscapeCell(orFallback(row.ResourceName, row.ResourceID)),
			EscapeCell(row.ResourceType),
			escapeCell(row.ResourceID, maxIDRunes),
			EscapeCell(row.Warning),
		})
	}
	return b.String()
}

// facts returns the (label, escaped value) rows of the facts table. Empty
// optional values are left out.
func (t Table) facts() [][2]string {
	ticket := t.Ticket
	if ticket == "" {
		ticket = t.Metadata.Ticket
	}
	m := t.Metadata
	required := [][2]string{
		{"Request", escapeCell(t.RequestID, maxIDRunes)},
		{"Principal", t.principal()},
		{"Duration", formatDuration(t.Duration)},
		{"Justification", escapeCell(t.Justification, maxJustificationRunes)},
	}
	optional := [][2]string{
		{"Ticket", ticket}, {"Backend", t.Backend},
		{"Repository", m.Repository}, {"Workflow", m.Workflow},
		{"Run", m.RunID}, {"Run attempt", m.RunAttempt}, {"Run URL", m.RunURL},
		{"Pull request", m.PullRequest}, {"Commit", m.Commit}, {"Ref", m.Ref},
		{"Environment", m.Environment}, {"Actor", m.Actor},
	}
	facts := required
	for _, f := range optional {
		if f[1] != "" {
			facts = append(facts, [2]string{f[0], escapeCell(f[1], maxIDRunes)})
		}
	}
	return facts
}

// principal renders "name (type, id)", or "id (type)" without a name.
func (t Table) principal() string {
	id := escapeCell(t.PrincipalID, maxIDRunes)
	typ := EscapeCell(t.PrincipalType)
	if t.PrincipalName == "" {
		return fmt.Sprintf("%s \\(%s\\)", id, typ)
	}
	return fmt.Sprintf("%s \\(%s, %s\\)", EscapeCell(t.PrincipalName), typ, id)
}

func writeRow(b *strings.Builder, cells []string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

func separatorRow(n int) []string {
	cells := make([]string, n)
	for i := range cells {
		cells[i] = "---"
	}
	return cells
}

func orFallback(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

// formatDuration drops zero trailing units: "15m" instead of "15m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// tableJSON fixes the JSON field names of Table, which scripts depend on.
type tableJSON struct {
	RequestID       string          `json:"request_id"`
	PrincipalID     string          `json:"principal_id"`
	PrincipalType   string          `json:"principal_type"`
	PrincipalName   string          `json:"principal_name,omitempty"`
	Duration        string          `json:"duration"`
	DurationSeconds int64           `json:"duration_seconds"`
	Justification   string          `json:"justification"`
	Ticket          string          `json:"ticket,omitempty"`
	Metadata        access.Metadata `json:"metadata"`
	Backend         string          `json:"backend"`
	Rows            []Row           `json:"rows"`
}

// JSON renders the table as indented JSON with snake_case field names. The
// duration appears both as Go text ("15m0s") and in whole seconds.
func (t Table) JSON() ([]byte, error) {
	rows := t.Rows
	if rows == nil {
		rows = []Row{}
	}
	doc := tableJSON{
		RequestID:       t.RequestID,
		PrincipalID:     t.PrincipalID,
		PrincipalType:   t.PrincipalType,
		PrincipalName:   t.PrincipalName,
		Duration:        t.Duration.String(),
		DurationSeconds: int64(t.Duration / time.Second),
		Justification:   t.Justification,
		Ticket:          t.Ticket,
		Metadata:        t.Metadata,
		Backend:         t.Backend,
		Rows:            rows,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode approval table %q: %w", t.RequestID, err)
	}
	return append(out, '\n'), nil
}
