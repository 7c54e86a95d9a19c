package serve

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// reviewers is what APIAuth needs of the API server: the TokenReview and
// SubjectAccessReview APIs.
type reviewers struct {
	tokens authnclient.TokenReviewInterface
	access authzclient.SubjectAccessReviewInterface
}

// APIAuth authenticates requests by their bearer token with a TokenReview
// and authorizes them with a SubjectAccessReview for the request's path
// and verb (nonResourceURLs in RBAC), as kube-rbac-proxy and
// controller-runtime's metrics filter do. Decisions are cached for ttl by
// the token's hash, at most maxCached of them; the API server's errors are
// not. Safe for concurrent use.
type APIAuth struct {
	api reviewers
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[decisionKey]decision
}

// maxCached bounds the decision cache: tokens come from the network, and
// every new one would otherwise add an entry.
const maxCached = 1024

// DefaultAuthTTL is how long an authentication and authorization decision
// is reused: a revoked permission stops working within this time.
const DefaultAuthTTL = 10 * time.Second

type decisionKey struct {
	token      [sha256.Size]byte
	verb, path string
}

type decision struct {
	status int // http.StatusOK, StatusUnauthorized or StatusForbidden
	reason string
	at     time.Time
}

// NewAPIAuth returns an APIAuth that asks the API server through the two
// clients; ttl <= 0 means DefaultAuthTTL.
func NewAPIAuth(tokens authnclient.TokenReviewInterface, access authzclient.SubjectAccessReviewInterface, ttl time.Duration) *APIAuth {
	if ttl <= 0 {
		ttl = DefaultAuthTTL
	}
	return &APIAuth{api: reviewers{tokens, access}, ttl: ttl, now: time.Now, cache: map[decisionKey]decision{}}
}

// Wrap returns h behind authentication and authorization: 401 without a
// token the API server accepts, 403 when its user may not use the
// request's verb on the request's path, 503 when the API server cannot be
// asked.
func (a *APIAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
			http.Error(w, "Unauthorized: a bearer token is required", http.StatusUnauthorized)
			return
		}
		d, err := a.decide(r.Context(), token, verbOf(r), r.URL.Path)
		if err != nil {
			http.Error(w, "cannot check the token with the API server: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if d.status != http.StatusOK {
			if d.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
			}
			http.Error(w, d.reason, d.status)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "bearer") && token != ""
}

// verbOf is the RBAC verb of a request to a non-resource URL.
func verbOf(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodDelete:
		return "delete"
	case http.MethodPatch:
		return "patch"
	}
	return strings.ToLower(r.Method)
}

func (a *APIAuth) decide(ctx context.Context, token, verb, path string) (decision, error) {
	key := decisionKey{token: sha256.Sum256([]byte(token)), verb: verb, path: path}
	a.mu.Lock()
	d, hit := a.cache[key]
	a.mu.Unlock()
	if hit && a.now().Sub(d.at) < a.ttl {
		return d, nil
	}
	d, err := a.review(ctx, token, verb, path)
	if err != nil {
		return d, err
	}
	d.at = a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCached {
		for k, old := range a.cache {
			if a.now().Sub(old.at) >= a.ttl {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxCached {
			clear(a.cache)
		}
	}
	a.cache[key] = d
	return d, nil
}

// review asks the API server who token is and whether it may use verb on
// path.
func (a *APIAuth) review(ctx context.Context, token, verb, path string) (decision, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr, err := a.api.tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		return decision{status: http.StatusUnauthorized, reason: "Unauthorized: the API server does not accept the token"}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := a.api.access.Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("subject access review: %w", err)
	}
	if !sar.Status.Allowed {
		return decision{status: http.StatusForbidden, reason: fmt.Sprintf("Forbidden: %s may not %s %s", u.Username, verb, path)}, nil
	}
	return decision{status: http.StatusOK}, nil
}
