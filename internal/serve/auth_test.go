package serve

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeAPI answers TokenReviews and SubjectAccessReviews: tokens maps a
// token to its user, allowed says which users may get /metrics.
func fakeAPI(tokens map[string]string, allowed map[string]bool, down *bool, calls *int) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		if *down {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if u, ok := tokens[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: u, Groups: []string{"system:authenticated"}}}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		na := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = na != nil && na.Path == "/metrics" && na.Verb == "get" && allowed[sar.Spec.User]
		return true, sar, nil
	})
	return c
}

func TestAPIAuth(t *testing.T) {
	down, calls := false, 0
	api := fakeAPI(map[string]string{"scraper-token": "scraper", "other-token": "other"}, map[string]bool{"scraper": true}, &down, &calls)
	auth := NewAPIAuth(api.AuthenticationV1().TokenReviews(), api.AuthorizationV1().SubjectAccessReviews(), time.Minute)
	now := time.Unix(1000, 0)
	auth.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_test_total", Help: "test"}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", auth.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) })))
	steps := []struct {
		name      string
		header    string
		down      bool
		advance   time.Duration
		want      int
		wantCalls int // TokenReviews so far
	}{
		{name: "no token", want: http.StatusUnauthorized},
		{name: "not a bearer token", header: "Basic c2NyYXBlcjp4", want: http.StatusUnauthorized},
		{name: "unknown token", header: "Bearer nope", want: http.StatusUnauthorized, wantCalls: 1},
		{name: "token without permission", header: "Bearer other-token", want: http.StatusForbidden, wantCalls: 2},
		{name: "token with permission", header: "Bearer scraper-token", want: http.StatusOK, wantCalls: 3},
		{name: "decision cached", header: "bearer scraper-token", want: http.StatusOK, wantCalls: 3},
		{name: "API server away, decision still cached", header: "Bearer scraper-token", down: true, want: http.StatusOK, wantCalls: 3},
		{name: "API server away, cache expired: not served", header: "Bearer scraper-token", down: true, advance: time.Minute, want: http.StatusServiceUnavailable, wantCalls: 4},
		{name: "errors are not cached", header: "Bearer scraper-token", want: http.StatusOK, wantCalls: 5},
	}
	for _, st := range steps {
		down = st.down
		now = now.Add(st.advance)
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/metrics", nil)
		if st.header != "" {
			req.Header.Set("Authorization", st.header)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != st.want || calls != st.wantCalls {
			t.Errorf("%s: status %d after %d token reviews, want %d after %d (body %q)", st.name, rec.Code, calls, st.want, st.wantCalls, rec.Body.String())
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", st.name)
		}
	}
}

// TestAPIAuthCacheBounded checks that tokens from the network cannot grow
// the decision cache without bound.
func TestAPIAuthCacheBounded(t *testing.T) {
	down, calls := false, 0
	api := fakeAPI(nil, nil, &down, &calls)
	auth := NewAPIAuth(api.AuthenticationV1().TokenReviews(), api.AuthorizationV1().SubjectAccessReviews(), time.Minute)
	for i := range 3 * maxCached {
		if _, err := auth.decide(context.Background(), string(rune(i))+"-token", "get", "/metrics"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(auth.cache); n > maxCached {
		t.Errorf("%d decisions cached, more than %d", n, maxCached)
	}
}
