package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Headers of every delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the timestamp,
	// a '.', and the body, keyed with the sink's secret. Signed sinks only.
	HeaderSignature = "X-Elevate-Signature"
	// HeaderTimestamp is the Unix time of the attempt in seconds. A
	// receiver rejects old timestamps to stop replays.
	HeaderTimestamp = "X-Elevate-Timestamp"
	// HeaderIdempotencyKey is the outbox message id, the same on every
	// attempt of one message.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Sign returns the X-Elevate-Signature value of body sent at timestamp
// (Unix seconds, as in X-Elevate-Timestamp).
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature made by Sign in constant time. Receivers
// written in Go can use it; it is also what the tests check against.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// endpoint is a resolved destination: its URL and key read from the
// configuration or the environment.
type endpoint struct {
	url    string
	secret []byte // nil: unsigned
}

// deliveryError is a failed POST. Permanent errors are not retried.
type deliveryError struct {
	status     int // 0 when no response arrived
	permanent  bool
	retryAfter time.Duration
	err        error
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// post sends one body. The error never contains the URL, which may hold a
// credential.
func post(ctx context.Context, client *http.Client, ep endpoint, key, contentType string, body []byte, now time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return &deliveryError{permanent: true, err: errors.New("build request: invalid endpoint URL")}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "elevate-broker")
	req.Header.Set(HeaderIdempotencyKey, key)
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderTimestamp, ts)
	if ep.secret != nil {
		req.Header.Set(HeaderSignature, Sign(ep.secret, ts, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error prints the URL, so only its cause is kept.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return &deliveryError{err: fmt.Errorf("post: %w", err)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	de := &deliveryError{status: resp.StatusCode,
		err: fmt.Errorf("post: status %d: %s", resp.StatusCode, plain(string(snippet), 200))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		de.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// The receiver rejected this body or this credential; sending it
		// again cannot succeed.
		de.permanent = true
	}
	return de
}

// parseRetryAfter reads seconds or an HTTP date; zero when absent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
