package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
)

// DefaultServiceClusterIPRange is the dual-stack Service range the API server
// gets unless Options says otherwise. Both halves are documentation or
// benchmarking ranges (RFC 2544, RFC 3849) that no real network uses, and
// they stay clear of the ranges netlab gives to test hosts.
const DefaultServiceClusterIPRange = "198.18.128.0/20,2001:db8:ffff::/112"

// Options configure Start. The zero value is ready to use.
type Options struct {
	// BindAddress is the address the API server listens on and advertises.
	// Default 127.0.0.1. Tests whose clients run in other network namespaces
	// pass an address those namespaces can reach, such as a netlab bridge.
	// etcd always listens on 127.0.0.1 only.
	BindAddress netip.Addr

	// CRDDir holds CustomResourceDefinition YAML files to install, one or
	// more per file. Default: manifests/crds in the repository; if that
	// directory has no CRDs, none are installed. An explicitly set CRDDir
	// must exist.
	CRDDir string

	// SkipCRDs installs no CRDs at all, for tests that need only the
	// built-in APIs. It saves the two seconds or so that installing takes.
	SkipCRDs bool

	// ServiceClusterIPRange is --service-cluster-ip-range. Default
	// DefaultServiceClusterIPRange.
	ServiceClusterIPRange string

	// ExtraAPIServerArgs are appended to the API server's flags, so they
	// override the defaults (e.g. --feature-gates=...).
	ExtraAPIServerArgs []string

	// ControllerManager says a kube-controller-manager will run against
	// this API server (package e2e/cluster): the API server then keeps its
	// ServiceAccount admission plugin and maintains the kubernetes
	// Service's endpoints itself, as in a real cluster.
	ControllerManager bool

	// StartTimeout bounds how long Start waits for etcd, the API server and
	// the CRDs to become ready, not counting building binaries. Default 60s.
	StartTimeout time.Duration

	// APIServerBinary and EtcdBinary override the binaries. Default: the
	// ones Binaries returns.
	APIServerBinary, EtcdBinary string
}

// ControlPlane is a running etcd and kube-apiserver. Its methods are safe for
// concurrent use.
type ControlPlane struct {
	dir        string
	url        string
	creds      *credentials
	kubeconfig string
	etcdURL    string
	etcd       *process
	apiserver  *process

	stopOnce sync.Once
	stopErr  error

	// saKubeconfigs caches ServiceAccountKubeconfig's files by
	// manifests:namespace/name@node; saApplied says whose RBAC
	// (manifests:namespace/name) was applied.
	saMu          sync.Mutex
	saKubeconfigs map[string]string
	saApplied     map[string]bool
}

// Start builds or reuses the binaries, starts etcd and kube-apiserver on free
// ports in a new temporary data directory, waits until the API server is
// ready and installs the CRDs. The processes outlive ctx; call Stop. On error
// nothing is left running.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	logger := klog.FromContext(ctx).WithName("controlplane")
	if !opts.BindAddress.IsValid() {
		opts.BindAddress = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if opts.ServiceClusterIPRange == "" {
		opts.ServiceClusterIPRange = DefaultServiceClusterIPRange
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	crdDirExplicit := opts.CRDDir != ""
	if !crdDirExplicit {
		root, err := RepoRoot()
		if err != nil {
			return nil, fmt.Errorf("start control plane: %w", err)
		}
		opts.CRDDir = filepath.Join(root, "manifests", "crds")
	}
	if opts.APIServerBinary == "" || opts.EtcdBinary == "" {
		kas, etcd, err := Binaries(ctx)
		if err != nil {
			return nil, fmt.Errorf("start control plane: %w", err)
		}
		opts.APIServerBinary = or(opts.APIServerBinary, kas)
		opts.EtcdBinary = or(opts.EtcdBinary, etcd)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "berth-controlplane-")
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	cp := &ControlPlane{dir: dir}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()

	if err := retryOnAddrInUse(func() error { return cp.startEtcd(ctx, opts.EtcdBinary) }); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	if err := retryOnAddrInUse(func() error { return cp.startAPIServer(ctx, opts) }); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	if err := waitForServiceCIDR(ctx, cp.RESTConfig()); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	n := 0
	if !opts.SkipCRDs {
		n, err = installCRDs(ctx, cp.RESTConfig(), opts.CRDDir, crdDirExplicit)
		if err != nil {
			return nil, fmt.Errorf("start control plane: %w", err)
		}
	}
	logger.Info("Control plane ready", "url", cp.url, "crds", n, "dir", dir, "elapsed", time.Since(start).Round(time.Millisecond))
	return cp, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, binary string) error {
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	clientPort, err := FreePort(loopback)
	if err != nil {
		return err
	}
	peerPort, err := FreePort(loopback)
	if err != nil {
		return err
	}
	clientURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))
	peerURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))
	args := []string{
		"--name=berth",
		"--data-dir=" + filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=berth=" + peerURL,
		"--initial-cluster-state=new",
		// Test data is thrown away: durability only costs time.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
	cp.etcd, err = startProcess("etcd", binary, cp.dir, args)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Second}
	if err := poll(ctx, cp.etcd, func() (bool, string) { return probe(ctx, client, clientURL+"/health", "") }); err != nil {
		return fmt.Errorf("wait for etcd: %w", err)
	}
	cp.etcdURL = clientURL
	return nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, opts Options) error {
	port, err := FreePort(opts.BindAddress)
	if err != nil {
		return err
	}
	cp.url = "https://" + net.JoinHostPort(opts.BindAddress.String(), strconv.Itoa(port))
	cp.creds, err = writeCredentials(cp.dir, opts.BindAddress, firstServiceIP(opts.ServiceClusterIPRange))
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=" + opts.BindAddress.String(),
		"--advertise-address=" + opts.BindAddress.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(cp.dir, "certs"),
		"--tls-cert-file=" + cp.creds.certFile,
		"--tls-private-key-file=" + cp.creds.keyFile,
		"--token-auth-file=" + cp.creds.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + cp.creds.saKeyFile,
		"--service-account-signing-key-file=" + cp.creds.saKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + opts.ServiceClusterIPRange,
	}
	if !opts.ControllerManager {
		// No kube-controller-manager runs: nothing would maintain the
		// kubernetes Service's endpoints or the default ServiceAccounts the
		// ServiceAccount admission plugin waits for.
		args = append(args, "--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount")
	}
	args = append(args,
		// Benchmarks drive the server hard from one client; the defaults
		// (400/200) would turn that into 429s rather than measurements.
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
		"--profiling=false",
	)
	args = append(args, opts.ExtraAPIServerArgs...)
	cp.apiserver, err = startProcess("kube-apiserver", opts.APIServerBinary, cp.dir, args)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.creds.caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	if err := poll(ctx, cp.apiserver, func() (bool, string) {
		return probe(ctx, client, cp.url+"/readyz", cp.creds.token)
	}); err != nil {
		return fmt.Errorf("wait for kube-apiserver /readyz: %w", err)
	}
	return nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["berth-e2e"] = &clientcmdapi.Cluster{Server: cp.url, CertificateAuthorityData: cp.creds.caPEM}
	cfg.AuthInfos["berth-e2e"] = &clientcmdapi.AuthInfo{Token: cp.creds.token}
	cfg.Contexts["berth-e2e"] = &clientcmdapi.Context{Cluster: "berth-e2e", AuthInfo: "berth-e2e"}
	cfg.CurrentContext = "berth-e2e"
	if err := clientcmd.WriteToFile(*cfg, cp.kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// RESTConfig returns a new client configuration for the admin user. It trusts
// the control plane's CA and allows 1000 QPS (burst 2000) so that client-side
// throttling does not distort benchmarks.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.url,
		BearerToken:     cp.creds.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), cp.creds.caPEM...)},
		QPS:             1000,
		Burst:           2000,
	}
}

// Kubeconfig returns the path of a kubeconfig file for the admin user. It is
// removed by Stop.
func (cp *ControlPlane) Kubeconfig() string { return cp.kubeconfig }

// CAFile returns the path of the CA certificate file (see CACert).
func (cp *ControlPlane) CAFile() string { return filepath.Join(cp.dir, "ca.crt") }

// ServiceAccountKeyFile returns the path of the private key that signs
// ServiceAccount tokens, which kube-controller-manager needs too.
func (cp *ControlPlane) ServiceAccountKeyFile() string { return cp.creds.saKeyFile }

// Token returns the admin user's bearer token.
func (cp *ControlPlane) Token() string { return cp.creds.token }

// URL returns the API server's base URL, https://<bind address>:<port>.
func (cp *ControlPlane) URL() string { return cp.url }

// CACert returns the PEM-encoded CA certificate that signed the API server's
// serving certificate.
func (cp *ControlPlane) CACert() []byte { return append([]byte(nil), cp.creds.caPEM...) }

// PauseAPIServer stops the API server's process (SIGSTOP) until resume is
// called (SIGCONT): its connections stay open and every request hangs, as
// with an API server partitioned away. resume may be called more than once.
func (cp *ControlPlane) PauseAPIServer() (resume func(), err error) {
	if err := cp.apiserver.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("pause kube-apiserver: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = cp.apiserver.cmd.Process.Signal(syscall.SIGCONT) }) }, nil
}

// Stop stops the API server and etcd (SIGTERM, then SIGKILL after a grace
// period), waits for them and removes the data directory. It returns an error
// if either process had exited on its own with a failure. Calling it more
// than once is safe and returns the first result.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		var errs []error
		for _, p := range []*process{cp.apiserver, cp.etcd} {
			if p != nil {
				errs = append(errs, p.stop(10*time.Second))
			}
		}
		if err := os.RemoveAll(cp.dir); err != nil {
			errs = append(errs, err)
		}
		cp.stopErr = errors.Join(errs...)
	})
	return cp.stopErr
}

// logTails returns the last lines of both logs, for failed tests.
func (cp *ControlPlane) logTails(n int) string {
	var b strings.Builder
	for _, p := range []*process{cp.etcd, cp.apiserver} {
		if p != nil {
			fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", p.logPath, fileTail(p.logPath, n))
		}
	}
	return b.String()
}

// poll calls check every 100ms until it reports ready, p exits or ctx ends.
func poll(ctx context.Context, p *process, check func() (bool, string)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, status := check()
		if ok {
			return nil
		}
		last = status
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%w; last status: %s\n--- last lines of %s ---\n%s", ctx.Err(), last, p.logPath, fileTail(p.logPath, 30))
		case <-tick.C:
		}
	}
}

// probe GETs url and reports whether it answered 200, or a short status.
func probe(ctx context.Context, client *http.Client, url, token string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	return false, fmt.Sprintf("%s: %s", resp.Status, body)
}

// firstServiceIP returns the first address of the primary Service range,
// which the API server gives to the kubernetes Service.
func firstServiceIP(ranges string) netip.Addr {
	primary, _, _ := strings.Cut(ranges, ",")
	p, err := netip.ParsePrefix(strings.TrimSpace(primary))
	if err != nil {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// LogTails returns the last n lines of etcd's and kube-apiserver's logs,
// for failures.
func (cp *ControlPlane) LogTails(n int) string { return cp.logTails(n) }
