package emulator

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// serveAdmin serves GET/PUT /_emulator/faults and GET /_emulator/state,
// for callers that present AdminToken() as a bearer token.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.adminToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="elevate-emulator"`)
		writeARMError(w, http.StatusUnauthorized, "Unauthorized", "The admin endpoints need the emulator's admin token as a bearer token.")
		return
	}
	switch {
	case r.URL.Path == "/_emulator/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.faults.get())
	case r.URL.Path == "/_emulator/faults" && r.Method == http.MethodPut:
		var cfg FaultConfig
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			writeARMError(w, http.StatusBadRequest, "InvalidRequestContent", "invalid fault config: "+err.Error())
			return
		}
		if err := s.SetFaults(cfg); err != nil {
			writeARMError(w, http.StatusBadRequest, "InvalidRequestContent", err.Error())
			return
		}
		s.log.Info("fault rules replaced", "rules", len(cfg.Rules), "seed", cfg.Seed)
		writeJSON(w, http.StatusOK, s.faults.get())
	case r.URL.Path == "/_emulator/state" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.snapshot())
	default:
		writeARMError(w, http.StatusNotFound, "NotFound", "Unknown admin endpoint; use /_emulator/faults or /_emulator/state.")
	}
}

// stateSnapshot is the JSON of GET /_emulator/state. Client secrets are
// left out.
type stateSnapshot struct {
	URL              string           `json:"url"`
	TenantID         string           `json:"tenantId"`
	GitHubIssuer     string           `json:"githubIssuer"`
	PropagationDelay string           `json:"propagationDelay"`
	Principals       []Principal      `json:"principals"`
	RoleAssignments  []RoleAssignment `json:"roleAssignments"` // deleted ones carry deletedOn
	Locks            []Lock           `json:"locks"`
	Subscriptions    []Subscription   `json:"subscriptions"`
}

func (s *Server) snapshot() stateSnapshot {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	snap := stateSnapshot{
		URL:              s.url,
		TenantID:         s.TenantID(),
		GitHubIssuer:     s.GitHubIssuer(),
		PropagationDelay: s.propagationDelay().String(),
		Principals:       []Principal{},
		RoleAssignments:  []RoleAssignment{},
		Locks:            []Lock{},
		Subscriptions:    s.cfg.Seed.Subscriptions,
	}
	for _, p := range s.st.principals {
		c := *p
		c.ClientSecret = ""
		snap.Principals = append(snap.Principals, c)
	}
	for _, a := range s.st.assignments {
		snap.RoleAssignments = append(snap.RoleAssignments, *a)
	}
	for _, l := range s.st.locks {
		snap.Locks = append(snap.Locks, l.Lock)
	}
	return snap
}
