package emulator

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultConfig injects failures into matching requests. The same Seed and the
// same sequence of requests give the same faults.
type FaultConfig struct {
	Seed  int64       `json:"seed"`
	Rules []FaultRule `json:"rules"`
}

// FaultRule describes one fault. The first rule that matches a request and
// fires (by Rate and Times) applies; the others are not consulted.
type FaultRule struct {
	Method     string        `json:"method,omitempty"`     // HTTP method; empty matches any
	Host       string        `json:"host,omitempty"`       // Go regexp on the Host header; empty matches any
	Path       string        `json:"path,omitempty"`       // Go regexp on the URL path; empty matches any
	Latency    time.Duration `json:"latency,omitempty"`    // delay before the response (JSON: nanoseconds or "50ms")
	Status     int           `json:"status,omitempty"`     // 429, 500 or 503; 0 passes the request on after Latency
	RetryAfter int           `json:"retryAfter,omitempty"` // seconds, sent as Retry-After with 429 and 503
	Drop       bool          `json:"drop,omitempty"`       // close the connection without a response
	Rate       float64       `json:"rate,omitempty"`       // fraction 0..1 of matches that fire; 0 means 1
	Times      int           `json:"times,omitempty"`      // fire at most N times; 0 means no limit
}

// UnmarshalJSON accepts latency as a number of nanoseconds or as a Go
// duration string such as "50ms", so admin requests can be written by hand.
func (r *FaultRule) UnmarshalJSON(data []byte) error {
	type plain FaultRule
	aux := struct {
		*plain
		Latency json.RawMessage `json:"latency,omitempty"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	if len(aux.Latency) == 0 || string(aux.Latency) == "null" {
		return nil
	}
	var text string
	if err := json.Unmarshal(aux.Latency, &text); err == nil {
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("invalid fault latency %q: %w", text, err)
		}
		r.Latency = d
		return nil
	}
	var ns int64
	if err := json.Unmarshal(aux.Latency, &ns); err != nil {
		return fmt.Errorf("invalid fault latency %s: want nanoseconds or a duration string", aux.Latency)
	}
	r.Latency = time.Duration(ns)
	return nil
}

// faultInjector applies a FaultConfig. It is safe for concurrent use; its
// random source and match counters advance under one lock, so a serial
// request sequence replays exactly.
type faultInjector struct {
	mu     sync.Mutex
	config FaultConfig
	rules  []compiledRule
	rng    *rand.Rand
}

type compiledRule struct {
	FaultRule
	host, path *regexp.Regexp
	matches    int
}

// set validates and installs cfg, resetting counters and the random source.
func (f *faultInjector) set(cfg FaultConfig) error {
	rules := make([]compiledRule, 0, len(cfg.Rules))
	for i, r := range cfg.Rules {
		c := compiledRule{FaultRule: r}
		var err error
		if r.Host != "" {
			if c.host, err = regexp.Compile(r.Host); err != nil {
				return fmt.Errorf("fault rule %d: invalid host regexp %q: %w", i, r.Host, err)
			}
		}
		if r.Path != "" {
			if c.path, err = regexp.Compile(r.Path); err != nil {
				return fmt.Errorf("fault rule %d: invalid path regexp %q: %w", i, r.Path, err)
			}
		}
		switch r.Status {
		case 0, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable:
		default:
			return fmt.Errorf("fault rule %d: invalid status %d; use 429, 500 or 503", i, r.Status)
		}
		if r.Rate < 0 || r.Rate > 1 {
			return fmt.Errorf("fault rule %d: invalid rate %v; use a fraction from 0 to 1", i, r.Rate)
		}
		if r.Times < 0 || r.RetryAfter < 0 || r.Latency < 0 {
			return fmt.Errorf("fault rule %d: times, retryAfter and latency must not be negative", i)
		}
		if r.Status == 0 && !r.Drop && r.Latency == 0 {
			return fmt.Errorf("fault rule %d: set status, drop or latency, or the rule does nothing", i)
		}
		rules = append(rules, c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.config = cfg
	f.rules = rules
	f.rng = rand.New(rand.NewSource(cfg.Seed))
	return nil
}

func (f *faultInjector) get() FaultConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.config
}

// pick returns the rule that fires for r, if any.
func (f *faultInjector) pick(r *http.Request) (FaultRule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.rules {
		c := &f.rules[i]
		if c.Method != "" && !strings.EqualFold(c.Method, r.Method) {
			continue
		}
		if c.host != nil && !c.host.MatchString(r.Host) {
			continue
		}
		if c.path != nil && !c.path.MatchString(r.URL.Path) {
			continue
		}
		if c.Rate > 0 && c.Rate < 1 && f.rng.Float64() >= c.Rate {
			continue
		}
		c.matches++
		if c.Times > 0 && c.matches > c.Times {
			continue
		}
		return c.FaultRule, true
	}
	return FaultRule{}, false
}

// apply carries out the rule. It returns true when it wrote or dropped the
// response, so the request must not be served.
func (f *faultInjector) apply(w http.ResponseWriter, r *http.Request, rule FaultRule, kind errorKind) bool {
	if rule.Latency > 0 {
		t := time.NewTimer(rule.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if rule.Drop {
		dropConnection(w)
		return true
	}
	if rule.Status == 0 {
		return false
	}
	if rule.RetryAfter > 0 && rule.Status != http.StatusInternalServerError {
		w.Header().Set("Retry-After", strconv.Itoa(rule.RetryAfter))
	}
	writeFaultError(w, rule, kind)
	return true
}

// dropConnection closes the client connection without writing a response.
// The server speaks HTTP/1.1 only, so hijacking is available.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // the server aborts the stream without a response
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// writeFaultError writes the error body the emulated service uses for the
// fault's status.
func writeFaultError(w http.ResponseWriter, rule FaultRule, kind errorKind) {
	var code, msg string
	switch rule.Status {
	case http.StatusTooManyRequests:
		code = "SubscriptionRequestsThrottled"
		msg = fmt.Sprintf("Number of requests exceeded the limit. Please try again after '%d' seconds.", rule.RetryAfter)
		if kind == kindVault {
			code = "Throttled"
			msg = "Request was not processed because too many requests were received."
		}
	case http.StatusServiceUnavailable:
		code, msg = "ServiceUnavailable", "The service is temporarily unavailable. Please retry the request."
	default:
		code, msg = "InternalServerError", "The server encountered an internal error. Please retry the request."
	}
	switch kind {
	case kindEntra:
		writeEntraError(w, rule.Status, "temporarily_unavailable", 90033, msg, "")
	default:
		writeARMError(w, rule.Status, code, msg)
	}
}
