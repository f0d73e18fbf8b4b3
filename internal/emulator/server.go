// Package emulator is an in-process Azure emulator for tests and demos: one
// HTTPS server on loopback that speaks the Entra token endpoint, ARM
// authorization (role assignments, role definitions, permissions, locks,
// PIM schedules and policies), Microsoft Graph PIM for Entra roles under
// /v1.0 and /beta, generic resource reads, Key Vault secrets on
// NAME.vault.localhost, and a GitHub Actions OIDC issuer, with RBAC enforced
// from its own assignments.
// The official Azure SDK for Go clients work against it when given its
// endpoints and Client().
package emulator

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxBodyBytes caps request bodies; larger ones get 413.
const maxBodyBytes = 1 << 20

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	listener   net.Listener
	http       *http.Server
	url        string
	port       string
	certs      *certificates
	caFile     string
	tempDir    string // removed by Close when Start created it
	adminToken string
	entra      *issuer // access tokens; iss is URL()/TENANT/v2.0
	github     *issuer // the emulated GitHub Actions OIDC issuer
	actions    actionsJobs
	signin     *issuer // the user sign-in OIDC provider under URL()/oidc
	codes      authCodes
	faults     faultInjector
	st         *state
	delay      atomic.Int64 // propagation delay in nanoseconds
	vaults     vaultBackend
	pim        *pimStore // guarded by st.mu
	closeOnce  sync.Once
	closeErr   error
	served     chan struct{}
}

// Start listens on cfg.Addr, writes the CA certificate to StateDir/ca.pem
// and serves until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.checkAndSetDefaults(); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, served: make(chan struct{})}
	s.delay.Store(int64(cfg.PropagationDelay))
	if err := s.setup(); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	go func() {
		defer close(s.served)
		err := s.http.Serve(tls.NewListener(s.listener, s.http.TLSConfig))
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("emulator stopped serving", "error", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.served:
		}
	}()
	s.log.Info("emulator started", "url", s.url, "ca_file", s.caFile, "tenant_id", s.TenantID())
	return s, nil
}

// setup does the fallible work of Start, in order.
func (s *Server) setup() error {
	var err error
	if s.certs, err = newCertificates(); err != nil {
		return err
	}
	// The emulator hands out tokens and an admin API with no real secrets
	// behind them, so it must never listen beyond loopback, whatever name
	// the address used: check the resolved address before and after.
	if addr, err := net.ResolveTCPAddr("tcp", s.cfg.Addr); err != nil || !addr.IP.IsLoopback() {
		return fmt.Errorf("listen on %q: not a loopback address; use 127.0.0.1:PORT or [::1]:PORT", s.cfg.Addr)
	}
	if s.listener, err = net.Listen("tcp", s.cfg.Addr); err != nil {
		return fmt.Errorf("listen on %q: %w", s.cfg.Addr, err)
	}
	if tcp, ok := s.listener.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		s.listener.Close()
		return fmt.Errorf("listen on %q: resolved to %s, which is not a loopback address; use 127.0.0.1:PORT or [::1]:PORT", s.cfg.Addr, s.listener.Addr())
	}
	host, port, err := net.SplitHostPort(s.listener.Addr().String())
	if err != nil {
		return fmt.Errorf("read listen address: %w", err)
	}
	s.port = port
	s.url = "https://" + net.JoinHostPort(host, port)

	tenant := s.cfg.Seed.Tenant.ID
	if s.entra, err = newIssuer(s.url + "/" + tenant + "/v2.0"); err != nil {
		return err
	}
	if s.github, err = newIssuer(s.GitHubIssuer()); err != nil {
		return err
	}
	if s.signin, err = newIssuer(s.OIDCIssuer()); err != nil {
		return err
	}
	if s.st, err = newState(s.cfg.Seed, s.GitHubIssuer(), s.now()); err != nil {
		return err
	}
	if s.pim, err = newPIMStore(s.cfg.Seed, s.st, s.now()); err != nil {
		return err
	}
	if err := s.faults.set(s.cfg.Faults); err != nil {
		return err
	}
	if s.vaults, err = newVaultBackend(s); err != nil {
		return err
	}
	if err := s.writeCA(); err != nil {
		return err
	}
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	s.adminToken = hex.EncodeToString(token)

	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{s.certs.server},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		},
		// HTTP/1.1 only, so fault rules can drop a connection by hijacking it.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	return nil
}

func (s *Server) writeCA() error {
	dir := s.cfg.StateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "elevate-emulator-")
		if err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		s.tempDir, dir = tmp, tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir %q: %w", dir, err)
	}
	s.caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(s.caFile, s.certs.caPEM, 0o644); err != nil {
		return fmt.Errorf("write CA certificate %q: %w", s.caFile, err)
	}
	return nil
}

func (s *Server) cleanup() {
	if s.listener != nil {
		_ = s.listener.Close()
	}
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

// Close stops the server and removes the state dir if Start created it.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// Shutdown waits up to five seconds for connections that were
		// opened but never sent a request, which SDK clients leave behind.
		// In-flight requests get a short grace; then everything is closed.
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				s.closeErr = fmt.Errorf("stop emulator: %w", err)
			}
			_ = s.http.Close()
		}
		<-s.served
		if s.tempDir != "" {
			_ = os.RemoveAll(s.tempDir)
		}
		s.log.Info("emulator stopped", "url", s.url)
	})
	return s.closeErr
}

// URL returns the base URL, "https://127.0.0.1:PORT": the ARM endpoint and
// the Entra authority host.
func (s *Server) URL() string { return s.url }

// CAFile returns the path of the CA certificate in PEM form.
func (s *Server) CAFile() string { return s.caFile }

// CertPool returns a pool holding only the emulator's CA.
func (s *Server) CertPool() *x509.CertPool { return s.certs.pool.Clone() }

// TenantID returns the seeded tenant id.
func (s *Server) TenantID() string { return s.cfg.Seed.Tenant.ID }

// AdminToken returns the bearer token for the /_emulator endpoints.
func (s *Server) AdminToken() string { return s.adminToken }

// VaultURL returns the Key Vault URL of the named vault,
// "https://NAME.vault.localhost:PORT/".
func (s *Server) VaultURL(name string) string {
	return "https://" + strings.ToLower(name) + ".vault.localhost:" + s.port + "/"
}

// VaultResource returns the audience of vault tokens and the resource the
// Key Vault challenge names, "https://vault.localhost:PORT".
func (s *Server) VaultResource() string { return "https://vault.localhost:" + s.port }

// VaultSuffix returns the DNS suffix of vault hosts, "vault.localhost:PORT".
func (s *Server) VaultSuffix() string { return "vault.localhost:" + s.port }

// GitHubIssuer returns the URL of the emulated GitHub Actions OIDC issuer.
func (s *Server) GitHubIssuer() string { return s.url + "/github" }

// Transport returns a transport that trusts the emulator's CA and dials
// every localhost name (localhost and *.localhost, loopback names by
// RFC 6761) to the emulator's listener, so vault hosts need no DNS entry.
func (s *Server) Transport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	target := s.listener.Addr().String()
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.certs.pool.Clone(), MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err == nil {
				host = strings.ToLower(host)
				if host == "localhost" || strings.HasSuffix(host, ".localhost") {
					addr = target
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
}

// Client returns an HTTP client that uses Transport().
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: s.Transport(), Timeout: 60 * time.Second}
}

// SetFaults replaces the fault rules and resets their counters and random
// source.
func (s *Server) SetFaults(f FaultConfig) error { return s.faults.set(f) }

// SetPropagationDelay changes the RBAC propagation delay. It applies to
// every assignment from now on, including ones already created.
func (s *Server) SetPropagationDelay(d time.Duration) { s.delay.Store(int64(d)) }

func (s *Server) propagationDelay() time.Duration { return time.Duration(s.delay.Load()) }

// RoleAssignments returns the live (not deleted) role assignments.
func (s *Server) RoleAssignments() []RoleAssignment {
	s.expireSchedules()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.liveAssignments()
}

// AddPrincipal adds a principal to the directory. A zero CreatedAt becomes
// Now(), so ARM reports it as PrincipalNotFound for ReplicationDelay.
func (s *Server) AddPrincipal(p Principal) error {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = s.now()
	}
	for i, fc := range p.FederatedCredentials {
		p.FederatedCredentials[i].Issuer = strings.ReplaceAll(fc.Issuer, GitHubIssuerPlaceholder, s.GitHubIssuer())
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if err := s.st.addPrincipal(p); err != nil {
		return fmt.Errorf("add principal %q: %w", p.ObjectID, err)
	}
	return nil
}

// ServeHTTP routes by host: NAME.vault.localhost goes to Key Vault,
// everything else by path to Entra, ARM, the GitHub issuer or the admin API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		s.log.Debug("request", "method", r.Method, "host", r.Host, "path", r.URL.Path,
			"status", rec.status, "elapsed", time.Since(start))
	}()
	r.Body = http.MaxBytesReader(rec, r.Body, maxBodyBytes)
	s.expireSchedules()

	kind := s.kindOf(r)
	if !strings.HasPrefix(r.URL.Path, "/_emulator/") || kind == kindVault {
		if rule, ok := s.faults.pick(r); ok && s.faults.apply(rec, r, rule, kind) {
			if rec.status == 0 {
				rec.status = -1 // dropped
			}
			return
		}
	}
	switch kind {
	case kindVault:
		s.vaults.ServeHTTP(rec, r)
	case kindEntra:
		s.serveEntra(rec, r)
	default:
		s.servePath(rec, r)
	}
}

// kindOf classifies a request by host and path.
func (s *Server) kindOf(r *http.Request) errorKind {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.HasSuffix(host, ".vault.localhost") {
		return kindVault
	}
	if isEntraPath(r.URL.Path) {
		return kindEntra
	}
	return kindARM
}

func (s *Server) servePath(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/_emulator/pim/"):
		s.servePIMAdmin(w, r)
	case strings.HasPrefix(p, "/_emulator/"):
		s.serveAdmin(w, r)
	case strings.HasPrefix(p, "/v1.0/") || strings.HasPrefix(p, "/beta/"):
		s.serveGraph(w, r)
	case p == "/github" || strings.HasPrefix(p, "/github/"):
		s.serveGitHub(w, r)
	case strings.HasPrefix(p, "/oidc/"):
		s.serveOIDC(w, r)
	default:
		s.serveARM(w, r)
	}
}

// statusRecorder remembers the status for the request log and keeps
// hijacking available for dropped connections.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	return hj.Hijack()
}
