// Package server is the diarysync server's transport: the Connect handlers
// of the sync, device, admin and research services, authentication and
// the role policy, the one table from application errors to Connect
// codes, Subscribe wake-ups, metrics, and the web console (package
// server/console) at /console/. It stores nothing itself: every
// handler goes through a study.Store, whichever engine implements it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server/console"
	"github.com/diarysync/diarysync/study"
)

// MaxRequestBytes is the largest request message the server reads.
const MaxRequestBytes = 4 << 20

// Config configures a Server.
type Config struct {
	// Store keeps the study; the server does not close it.
	Store  study.Store
	Logger *slog.Logger // default: discard
	// Heartbeat is how often idle Subscribe streams get a heartbeat
	// (default 15 s).
	Heartbeat time.Duration
	// PublicURL is the server's address as people reach it (behind a
	// reverse proxy, the proxy's): the web console puts it in enrolment
	// links and QR codes and sends Secure cookies when it is https.
	// Empty: each request's own address.
	PublicURL string
	// Console tunes the web console at /console/; its store, hub, logger
	// and public URL are the server's.
	Console console.Config
	// TrustedProxies are the reverse proxies whose X-Forwarded-For
	// header says where a request comes from (for the enrolment limit).
	// A request from anyone else is taken to come from its peer
	// address, whatever headers it sends.
	TrustedProxies []netip.Prefix
	// MaxStreamsPerDevice and MaxStreams cap open Subscribe streams per
	// device and in all (defaults DefaultMaxStreamsPerDevice and
	// DefaultMaxStreams); beyond them a stream is refused with
	// ResourceExhausted.
	MaxStreamsPerDevice int
	MaxStreams          int
	// MinBodyRate (bytes a second) and BodyGrace cut off a request body
	// that arrives slower than the rate on average once the grace has
	// passed (defaults DefaultMinBodyRate and DefaultBodyGrace).
	MinBodyRate int
	BodyGrace   time.Duration
	// PrivateMetrics leaves /metrics out of Handler: serve
	// MetricsHandler on a private address instead.
	PrivateMetrics bool
}

// Server serves the diarysync API over HTTP.
type Server struct {
	db      study.Store
	log     *slog.Logger
	hub     *hub
	metrics *Metrics
	// streams caps every long-lived stream the server serves: each one
	// (a Subscribe stream, a live page of a console) takes a slot for its
	// lifetime.
	streams *streamLimiter
	handler http.Handler

	stopWatch func() // stops WatchCommits, if the store has it
	closeOnce sync.Once
}

// New builds a Server from cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MaxStreamsPerDevice <= 0 {
		cfg.MaxStreamsPerDevice = DefaultMaxStreamsPerDevice
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	if cfg.BodyGrace <= 0 {
		cfg.BodyGrace = DefaultBodyGrace
	}
	s := &Server{db: cfg.Store, log: cfg.Logger, hub: newHub(), metrics: NewMetrics()}
	if g, ok := cfg.Store.(study.GroupCounter); ok {
		s.metrics.countGroups(g)
	}
	opts := []connect.HandlerOption{
		connect.WithInterceptors(&observer{log: s.log, metrics: s.metrics}, &authenticator{db: s.db, log: s.log}),
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(1 << 10),
		gzipOption(s.metrics),
	}
	opts = append(opts, codecs()...)
	mux := http.NewServeMux()
	s.streams = newStreamLimiter(cfg.MaxStreamsPerDevice, cfg.MaxStreams, s.metrics)
	mux.Handle(diaryv1connect.NewSyncServiceHandler(newSyncHandler(s.db, s.hub, s.log, s.metrics, s.streams, cfg.Heartbeat), opts...))
	mux.Handle(diaryv1connect.NewDeviceServiceHandler(newDeviceHandler(s.db, s.hub, s.log, cfg.TrustedProxies), opts...))
	mux.Handle(diaryv1connect.NewAdminServiceHandler(newAdminHandler(s.db, s.hub, s.log), opts...))
	mux.Handle(diaryv1connect.NewResearchServiceHandler(newResearchHandler(s.db, s.log), opts...))
	services := []string{
		diaryv1connect.SyncServiceName,
		diaryv1connect.DeviceServiceName,
		diaryv1connect.AdminServiceName,
		diaryv1connect.ResearchServiceName,
	}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(services...)))
	reflector := grpcreflect.NewStaticReflector(services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	if !cfg.PrivateMetrics {
		mux.Handle("GET /metrics", s.metrics)
	}
	s.mountConsole(mux, cfg)
	s.handler = limitBodies(mux, cfg.MinBodyRate, cfg.BodyGrace, s.metrics)
	if w, ok := s.db.(study.CommitWatcher); ok {
		// Streams on this process wake for commits made through other
		// processes sharing the store, too.
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.WatchCommits(ctx, func(wake *study.Wakeups) {
				if wake == nil {
					s.hub.wakeAll()
					return
				}
				s.hub.notify(wake)
			})
		}()
		s.stopWatch = func() { stop(); <-done }
	}
	return s
}

// Close ends every Subscribe stream, like Drain, and stops listening for
// other processes' commits. The store stays open.
func (s *Server) Close() {
	s.Drain()
	s.closeOnce.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
		}
	})
}

// Handler returns the HTTP handler serving every service (and /metrics,
// unless Config.PrivateMetrics).
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// MetricsHandler serves GET /metrics alone, for a private address.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics)
	return mux
}

// Drain ends every Subscribe stream (telling clients to reconnect) so that
// an HTTP server's Shutdown can complete.
func (s *Server) Drain() { s.hub.shutdown() }

// flushEvery writes devices' last sync times every interval until ctx
// ends.
func (s *Server) flushEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.db.FlushSyncTimes(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("cannot record device sync times", "err", err)
			}
		}
	}
}

// ServeOptions configures Serve.
type ServeOptions struct {
	TLSCert, TLSKey string // both or neither
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// when ctx ends (default 10 s).
	ShutdownTimeout time.Duration
}

// Serve serves on ln until ctx ends, then stops taking requests, ends
// Subscribe streams, waits for requests in flight (every push they carry
// is committed or not, never half), and records device sync times.
// Without TLS it speaks HTTP/1.1 and unencrypted HTTP/2 (h2c); with TLS,
// HTTP/1.1 and HTTP/2.
func (s *Server) Serve(ctx context.Context, ln net.Listener, opts ServeOptions) error {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	useTLS := opts.TLSCert != "" || opts.TLSKey != ""
	if useTLS {
		// Serve owns ln: on these early returns, as after serving, it
		// is closed, so that the address is not held by nobody.
		if opts.TLSCert == "" || opts.TLSKey == "" {
			ln.Close()
			return errors.New("TLS needs both a certificate and a key")
		}
		if _, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey); err != nil {
			ln.Close()
			return fmt.Errorf("cannot load TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	flushCtx, stopFlush := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() { defer close(flushed); s.flushEvery(flushCtx, 5*time.Second) }()

	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, opts.TLSCert, opts.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var serveErr error
	select {
	case err := <-errc:
		serveErr = err
	case <-ctx.Done():
		s.log.Info("shutting down")
		s.Drain()
		sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("requests still running at shutdown timeout; closing", "err", err)
			srv.Close()
		}
		cancel()
		<-errc
	}
	stopFlush()
	<-flushed
	s.Close()
	if err := s.db.FlushSyncTimes(context.Background()); err != nil {
		s.log.Error("cannot record device sync times", "err", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}
