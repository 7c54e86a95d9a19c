package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/internal/helmchart"
	"github.com/berthlb/berth/internal/hostdeps"
)

// TestDashboardQueries runs every query of the chart's Grafana dashboard
// against a real Prometheus (Debian's prometheus) that scrapes a real
// berth-controller and two speakers with BGP sessions to FRR, forwarding
// and layer 2 on, while Services are allocated, announced and forwarded
// and one stays pending. The speakers serve their metrics as the chart
// does (--metrics-secure: HTTPS, a token TokenReview and
// SubjectAccessReview accept), and Prometheus scrapes them with the token
// of a ServiceAccount bound to berth-metrics-reader, as the chart's
// ServiceMonitor does. Each query must return at least one sample that is
// a number.
func TestDashboardQueries(t *testing.T) {
	hostdeps.Require(t, "prometheus")
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(filepath.Join(root, "charts", "berth", "dashboards", "berth.json"))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := helmchart.DashboardQueries(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	fl := newFwdLabWith(t, nil, "--forwarding=true", "--metrics-secure", "--cleanup-on-exit")
	token := tokenOf(t, scraperKubeconfig(t, fl.e.cp, "monitoring", "prometheus"))
	var speakers []string
	for _, n := range fl.nodes {
		speakers = append(speakers, n.speaker.metrics)
	}
	prom := startPrometheus(t, fl.ctrl.metrics, speakers, token)
	poll(t, 60*time.Second, "Prometheus scrapes the controller and both speakers", func() error {
		res, err := prom.query(t.Context(), `up == 1`)
		if err == nil && len(res) != 3 {
			err = fmt.Errorf("%d targets up, want 3", len(res))
		}
		return err
	})

	// Work for every panel, while Prometheus watches: a dual-stack
	// Service allocated, announced over BGP and forwarded, and one that
	// stays pending.
	fl.e.namespace(t, "demo", nil)
	fl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	fl.e.waitAllocated(t, "demo", "web", 2)
	fl.endpoints("demo", "web", map[*labNode]bool{fl.nodes[0]: true, fl.nodes[1]: true})
	fl.e.service(t, "demo", "stuck", withAnnotation(v1alpha1.AnnotationPool, "missing"))
	fl.e.waitPending(t, "demo", "stuck", v1alpha1.ReasonNoMatchingPool)

	start := time.Now()
	for _, q := range queries {
		t.Run(q, func(t *testing.T) {
			var last []promSample
			poll(t, 60*time.Second, "a number from "+q, func() error {
				res, err := prom.query(t.Context(), q)
				if err != nil {
					return err
				}
				last = res
				for _, s := range res {
					if !math.IsNaN(s.value) {
						return nil
					}
				}
				return fmt.Errorf("no sample with a number: %v", res)
			})
			t.Logf("%v", last)
		})
	}
	t.Logf("MEASURED: all %d dashboard queries returned data %v after the Services were created", len(queries), time.Since(start).Round(time.Second))
}

// prometheus is a running Prometheus server.
type prometheus struct {
	addr string
}

// startPrometheus runs Prometheus scraping the controller over HTTP and
// the speakers over HTTPS with token, every second.
func startPrometheus(t *testing.T, controller string, speakers []string, token string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := func(ss []string) string { return `["` + strings.Join(ss, `", "`) + `"]` }
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: berth-controller
  static_configs:
  - targets: %s
- job_name: berth-speaker
  scheme: https
  tls_config:
    insecure_skip_verify: true
  authorization:
    credentials_file: %s
  static_configs:
  - targets: %s
`, quoted([]string{controller}), tokenFile, quoted(speakers))
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command("prometheus", "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p := startProc(t, "prometheus", cmd, syscall.SIGTERM)
	p.mayBeRefused = true
	return &prometheus{addr: addr}
}

// promSample is one sample of an instant query's result.
type promSample struct {
	labels map[string]string
	value  float64
}

func (s promSample) String() string { return fmt.Sprintf("%v=%v", s.labels, s.value) }

// query runs an instant query.
func (p *prometheus) query(ctx context.Context, q string) ([]promSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	var out []promSample
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %q: %w", q, s, err)
		}
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out, nil
}
