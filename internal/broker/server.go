package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/elevate-dev/elevate/internal/azure"
	"github.com/elevate-dev/elevate/internal/lifecycle"
	"github.com/elevate-dev/elevate/internal/policy"
	"github.com/elevate-dev/elevate/internal/store"
)

// azureRetry makes the SDK retry 429, 5xx and dropped connections with
// backoff, honouring Retry-After.
var azureRetry = azpolicy.RetryOptions{MaxRetries: 5, RetryDelay: 400 * time.Millisecond, MaxRetryDelay: 20 * time.Second}

// ServerOptions are a Server's dependencies that do not come from the
// configuration file.
type ServerOptions struct {
	// Getenv reads the Azure environment and credential variables the CLI
	// documents (ELEVATE_ARM_ENDPOINT, AZURE_TENANT_ID, AZURE_CLIENT_ID,
	// ...). Default os.Getenv.
	Getenv func(string) string
	Logger *slog.Logger
	Now    func() time.Time
	// Listener, when set, is served instead of opening ServerConfig.Listen,
	// so a caller can learn the address before the configuration is made.
	Listener net.Listener
	// Engine tuning for tests and the demo; zero fields take the lifecycle
	// defaults.
	EngineOptions lifecycle.Options
	// UI builds the web UI when ServerConfig.UI.Enabled. It is a hook
	// because the UI package imports this one.
	UI func(UIDeps) (http.Handler, error)
}

// UIDeps are the parts of a Server that ServerOptions.UI builds on.
type UIDeps struct {
	Config  ServerConfig // checked, with defaults set
	Service *Service
	Store   store.Store
	Engine  *lifecycle.Engine
	// Client trusts ELEVATE_CA_FILE, for the sign-in provider's endpoints.
	Client *http.Client
	Getenv func(string) string
	Logger *slog.Logger
	Now    func() time.Time
	// URL is the broker's base URL, such as https://127.0.0.1:8443.
	URL string
}

// Server is a broker process: the Service, its HTTP API over TLS and its
// sweeper, built from a ServerConfig.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	svc     *Service
	store   store.Store
	api     *API
	http    *http.Server
	ln      net.Listener
	url     string
	certs   *x509.CertPool
	devCert string
	ready   atomic.Bool
	obs     observability
}

// NewServer signs in to Azure as the broker's identity, opens the store,
// loads the policy and listens. Nothing is served until Run.
func NewServer(ctx context.Context, cfg ServerConfig, o ServerOptions) (*Server, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{cfg: cfg, log: o.Logger}
	engine, client, err := s.connectAzure(ctx, o)
	if err != nil {
		return nil, err
	}
	pol, err := policy.Load(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if s.store, err = openStore(ctx, cfg.Storage, store.Options{Now: o.Now, Logger: o.Logger}); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.store.Close()
		}
	}()
	svcStore, notifyHook, err := s.observeStore(o)
	if err != nil {
		return nil, err
	}
	s.svc, err = New(Config{Store: svcStore, Policy: pol, Engine: engine, ReplicaID: cfg.ReplicaID, Now: o.Now,
		Logger: o.Logger, MaxDuration: cfg.MaxDuration, ApprovalTimeout: cfg.ApprovalTimeout,
		SweepInterval: cfg.SweepInterval, Notify: notifyHook, Backends: cfg.Backends})
	if err != nil {
		return nil, err
	}
	auth, err := NewAuthenticator(AuthConfig{Pipeline: cfg.PipelineAuth, Approver: cfg.ApproverAuth, Client: client, Now: o.Now})
	if err != nil {
		return nil, err
	}
	if len(cfg.ApproverAuth.StaticTokens) == 0 && cfg.ApproverAuth.OIDC == nil {
		o.Logger.Warn("no approver_auth configured: only pipelines can call the broker, and requests that need approval expire")
	}
	s.api = NewAPI(s.svc, auth, APIOptions{Logger: o.Logger, Now: o.Now, Ready: s.ready.Load,
		RatePerSecond: cfg.RateLimit.PerSecond, RateBurst: cfg.RateLimit.Burst, TrustedProxies: cfg.RateLimit.TrustedProxies})
	if err := s.listen(o.Listener); err != nil {
		return nil, err
	}
	if err := s.mountUI(o, engine, client); err != nil {
		s.ln.Close()
		return nil, err
	}
	if err := s.mountMetrics(); err != nil {
		s.ln.Close()
		return nil, err
	}
	ok = true
	return s, nil
}

// mountUI serves the web UI at / when it is enabled. The API keeps /v1,
// /healthz and /readyz with bearer authentication only.
func (s *Server) mountUI(o ServerOptions, engine *lifecycle.Engine, client *http.Client) error {
	if !s.cfg.UI.Enabled {
		return nil
	}
	if o.UI == nil {
		return errors.New("ui.enabled is set but this program was built without the web UI")
	}
	ui, err := o.UI(UIDeps{Config: s.cfg, Service: s.svc, Store: s.store, Engine: engine, Client: client,
		Getenv: o.Getenv, Logger: o.Logger, Now: o.Now, URL: s.url})
	if err != nil {
		return fmt.Errorf("web UI: %w", err)
	}
	api := s.http.Handler
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/healthz", api)
	mux.Handle("/readyz", api)
	mux.Handle("/", ui)
	s.http.Handler = mux
	return nil
}

// connectAzure builds the broker's credential from the environment, checks
// it by signing in, and returns the grant engine and an HTTP client that
// trusts ELEVATE_CA_FILE, which the token verifiers use too.
func (s *Server) connectAzure(ctx context.Context, o ServerOptions) (*lifecycle.Engine, *http.Client, error) {
	env, err := azure.EnvironmentFromEnv(o.Getenv)
	if err != nil {
		return nil, nil, err
	}
	client, err := env.HTTPClient()
	if err != nil {
		return nil, nil, err
	}
	cred, kind, err := azure.NewCredential(env, client, azure.CredentialConfig{Kind: o.Getenv("ELEVATE_CREDENTIAL"), Getenv: o.Getenv})
	if err != nil {
		return nil, nil, fmt.Errorf("broker credential: %w", err)
	}
	rbac, err := azure.NewRBAC(cred, env.ARMOptions(client, &azureRetry))
	if err != nil {
		return nil, nil, err
	}
	caller, err := azure.WhoAmI(ctx, cred, env)
	if err != nil {
		return nil, nil, fmt.Errorf("sign in to %s with the %s credential: %w", env.AuthorityHost, kind, err)
	}
	s.log.Info("signed in to Azure", "credential", kind, "object_id", caller.ObjectID, "tenant_id", caller.TenantID)
	// The sweeper schedules a PIM removal refused in the first five
	// minutes, rather than wait for it in a worker.
	engineOptions := o.EngineOptions
	engineOptions.DeferEarlyRemoval = true
	engine := lifecycle.New(lifecycle.Config{ARM: rbac, CallerID: caller.ObjectID, Logger: s.log, Options: engineOptions})
	if slices.Contains(s.cfg.Backends, lifecycle.BackendPIMAssign) {
		pim, err := azure.NewPIM(cred, env.ARMOptions(client, &azureRetry))
		if err != nil {
			return nil, nil, err
		}
		if err := engine.AddPIM(lifecycle.PIMConfig{PIM: pim}); err != nil {
			return nil, nil, err
		}
	}
	return engine, client, nil
}

func openStore(ctx context.Context, c StorageConfig, opts store.Options) (store.Store, error) {
	if c.Postgres != "" {
		return store.OpenPostgres(ctx, c.Postgres, opts)
	}
	return store.OpenSQLite(ctx, c.SQLite, opts)
}

// listen opens the TLS listener with the configured or a development
// certificate.
func (s *Server) listen(ln net.Listener) error {
	var cert tls.Certificate
	var err error
	if s.cfg.TLS.Mode == TLSModeDev {
		cert, err = s.devCertificate()
	} else {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			err = fmt.Errorf("load tls.cert_file %q and tls.key_file %q: %w", s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile, err)
		}
	}
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
		}
	}
	s.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	s.url = "https://" + ln.Addr().String()
	s.http = &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Creating a request grants in Azure before it responds, which
		// with ARM retries can take a minute.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// devCertificate makes a self-signed certificate for loopback names, valid
// for 30 days, and writes it where clients can find it to trust it.
func (s *Server) devCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate dev TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate dev TLS serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "elevate broker (development)"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create dev TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse dev TLS certificate: %w", err)
	}
	s.certs = x509.NewCertPool()
	s.certs.AddCert(leaf)
	if s.devCert, err = writeDevCert(s.cfg.TLS.DevCertFile, der); err != nil {
		return tls.Certificate{}, err
	}
	s.log.Warn("serving with a self-signed development certificate; clients must trust it",
		"cert_file", s.devCert, "not_after", tmpl.NotAfter)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func writeDevCert(path string, der []byte) (string, error) {
	var f *os.File
	var err error
	if path == "" {
		f, err = os.CreateTemp("", "elevate-broker-dev-*.pem")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("write dev TLS certificate: %w", err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		return "", fmt.Errorf("write dev TLS certificate %s: %w", f.Name(), err)
	}
	return f.Name(), f.Close()
}

// URL returns the broker's base URL, such as https://127.0.0.1:8443.
func (s *Server) URL() string { return s.url }

// CertPool returns a pool trusting the development certificate, or nil
// when the broker serves a configured certificate.
func (s *Server) CertPool() *x509.CertPool { return s.certs }

// DevCertFile returns the path of the development certificate, or "".
func (s *Server) DevCertFile() string { return s.devCert }

// Service returns the broker's Service.
func (s *Server) Service() *Service { return s.svc }

// Store returns the broker's store; Run closes it.
func (s *Server) Store() store.Store { return s.store }

// Run serves until ctx ends, then shuts down in order: stop accepting
// calls, wait for calls in flight up to ShutdownTimeout, stop the sweeper
// and wait for it, close the store.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("broker started", "url", s.url, "replica", s.svc.cfg.ReplicaID, "storage", s.storageKind())
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var sweeper sync.WaitGroup
	sweeper.Go(func() {
		s.svc.Reconcile(sweepCtx)
		s.ready.Store(true)
		_ = s.svc.Sweep(sweepCtx)
	})
	stopObservability := s.startObservability(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(s.ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve %s: %w", s.url, err)
	}
	s.ready.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := s.http.Shutdown(shutdownCtx); serr != nil {
		s.log.Error("shutdown: calls still in flight were cut off", "timeout", s.cfg.ShutdownTimeout, "error", serr)
	}
	stopSweep()
	sweeper.Wait()
	stopObservability()
	if cerr := s.store.Close(); cerr != nil {
		s.log.Error("close store failed", "error", cerr)
	}
	s.log.Info("broker stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) storageKind() string {
	if s.cfg.Storage.Postgres != "" {
		return "postgres"
	}
	return "sqlite:" + s.cfg.Storage.SQLite
}
