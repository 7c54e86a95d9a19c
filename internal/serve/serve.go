// Package serve runs the small HTTP server every Berth process exposes:
// Prometheus metrics from the process's own registry, /healthz, and
// /readyz when the caller can say whether it is ready. /metrics can be
// guarded by the API server's TokenReview and SubjectAccessReview (APIAuth)
// and served over HTTPS; the health endpoints always stay open.
package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics serves /metrics from reg, /healthz, and (when ready is not nil)
// /readyz on addr until the returned stop function is called. ready
// returns nil when ready, else what is missing, which /readyz shows.
func Metrics(ctx context.Context, addr string, reg *prometheus.Registry, ready func(context.Context) error) (stop func(), err error) {
	return Serve(ctx, Config{Addr: addr, Registry: reg, Ready: ready})
}

// Config configures Serve.
type Config struct {
	// Addr is the address to listen on.
	Addr string
	// Registry is served on /metrics.
	Registry *prometheus.Registry
	// Ready, when not nil, answers /readyz: nil when ready, else what is
	// missing.
	Ready func(context.Context) error
	// Healthy, when not nil, answers /healthz: nil while the process
	// makes progress, else why not (a Stall's Check), upon which the
	// kubelet restarts it. Without it /healthz always says ok.
	Healthy func(context.Context) error
	// Auth, when not nil, guards /metrics: only requests with a token the
	// API server authenticates, for a user allowed to get /metrics, are
	// served. /healthz and /readyz stay open, for the kubelet's probes.
	Auth *APIAuth
	// TLS serves HTTPS with a self-signed certificate made at start, so
	// that scrapers' tokens never cross the network in the clear.
	TLS bool
}

// Serve serves cfg's endpoints until the returned stop function is called.
func Serve(ctx context.Context, cfg Config) (stop func(), err error) {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})
	if cfg.Auth != nil {
		mux.Handle("/metrics", cfg.Auth.Wrap(metrics))
	} else {
		mux.Handle("/metrics", metrics)
	}
	healthy := cfg.Healthy
	if healthy == nil {
		healthy = func(context.Context) error { return nil }
	}
	mux.Handle("/healthz", probe("unhealthy", healthy, http.StatusInternalServerError))
	if cfg.Ready != nil {
		mux.Handle("/readyz", probe("not ready", cfg.Ready, http.StatusServiceUnavailable))
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if cfg.TLS {
		cert, err := selfSigned(time.Now())
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logr.FromContextOrDiscard(ctx).Error(err, "Metrics server stopped")
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// probe answers ok while check passes, else code and what check says.
func probe(what string, check func(context.Context) error, code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := check(r.Context()); err != nil {
			http.Error(w, what+": "+err.Error(), code)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
}

// selfSigned makes a certificate for the metrics server, valid for a year
// from now. Scrapers cannot verify it (they skip verification, as with
// kube-rbac-proxy's default); it only keeps tokens off the wire.
func selfSigned(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("metrics certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("metrics certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "berth-metrics"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("metrics certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// NewRegistry returns a registry with the Go runtime and process
// collectors, for a process's own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
