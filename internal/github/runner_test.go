package github

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseOutputFile reads a GITHUB_OUTPUT file the way the runner does:
// name=value lines, or name<<DELIM blocks ended by a line equal to DELIM.
func parseOutputFile(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok {
			var lines []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				lines = append(lines, sc.Text())
			}
			if !closed {
				t.Fatalf("block %q has no closing delimiter", name)
			}
			out[name] = strings.Join(lines, "\n")
			continue
		}
		name, value, _ := strings.Cut(line, "=")
		out[name] = value
	}
	return out
}

func TestSetOutputMultiLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output")
	r := Runner{OutputFile: path}
	values := map[string]string{
		"table":     "| a | b |\n|---|---|\n| 1 | 2 |",
		"injection": "x\nEOF\nrequest-id=forged\nghadelimiter_",
		"plain":     "c5b2",
	}
	for name, v := range values {
		if err := r.SetOutput(name, v); err != nil {
			t.Fatalf("SetOutput(%q): %v", name, err)
		}
	}
	got := parseOutputFile(t, path)
	for name, want := range values {
		if got[name] != want {
			t.Errorf("output %q = %q; want %q", name, got[name], want)
		}
	}
	if _, ok := got["request-id"]; ok {
		t.Errorf("a value injected output request-id")
	}
}

func TestSetOutputRejectsBadName(t *testing.T) {
	r := Runner{OutputFile: filepath.Join(t.TempDir(), "output")}
	for _, name := range []string{"", "a=b", "a\nb"} {
		if err := r.SetOutput(name, "v"); err == nil {
			t.Errorf("SetOutput(%q) succeeded; want an error", name)
		}
	}
}

func TestWritesOutsideActions(t *testing.T) {
	var r Runner
	if err := r.SetOutput("a", "b"); err != ErrNotInActions {
		t.Errorf("SetOutput error = %v; want ErrNotInActions", err)
	}
	if err := r.AppendSummary("x"); err != ErrNotInActions {
		t.Errorf("AppendSummary error = %v; want ErrNotInActions", err)
	}
}

func TestMaskEachLine(t *testing.T) {
	var log bytes.Buffer
	Runner{Log: &log}.Mask("first\r\nsecond%\n\n")
	want := "::add-mask::first\n::add-mask::second%25\n"
	if log.String() != want {
		t.Errorf("mask output = %q; want %q", log.String(), want)
	}
}

func TestAnnotateEscapes(t *testing.T) {
	var log bytes.Buffer
	Runner{Log: &log}.Annotate(LevelError, "--scope: bad", "line1\nline2 100%")
	want := "::error title=--scope%3A bad::line1%0Aline2 100%25\n"
	if log.String() != want {
		t.Errorf("annotation = %q; want %q", log.String(), want)
	}
}

func TestTokenSourceRequestsAudience(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer runtime-token" {
			http.Error(w, "bad bearer", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"value":"id-token-for-` + r.URL.Query().Get("audience") + `"}`))
	}))
	defer srv.Close()
	env := map[string]string{
		"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-token",
	}
	src, ok := TokenSourceFromEnv(func(k string) string { return env[k] }, srv.Client())
	if !ok {
		t.Fatal("TokenSourceFromEnv found no source")
	}
	tok, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "id-token-for-" + AzureAudience; tok != want {
		t.Errorf("token = %q; want %q", tok, want)
	}
	src.RequestToken = "wrong"
	if _, err := src.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "id-token: write") {
		t.Errorf("error = %v; want a hint about id-token: write", err)
	}
}
