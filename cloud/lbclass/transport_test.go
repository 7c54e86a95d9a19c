package lbclass

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFinalizerTransport: a PATCH of a Service has upstream's cleanup
// finalizer replaced by Berth's; any other request passes unchanged.
func TestFinalizerTransport(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
	}))
	defer srv.Close()
	c := &http.Client{Transport: FinalizerTransport(http.DefaultTransport)}
	const add = `{"metadata":{"finalizers":["service.kubernetes.io/load-balancer-cleanup"]}}`
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPatch, "/api/v1/namespaces/ns/services/a/status", add},
		{http.MethodPatch, "/api/v1/namespaces/ns/services/a/status", `{"metadata":{"$deleteFromPrimitiveList/finalizers":["service.kubernetes.io/load-balancer-cleanup"]}}`},
		{http.MethodPatch, "/api/v1/nodes/n", add},
		{http.MethodPut, "/api/v1/namespaces/ns/services/a", add},
	} {
		req, err := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{
		`PATCH /api/v1/namespaces/ns/services/a/status {"metadata":{"finalizers":["berth.dev/load-balancer-cleanup"]}}`,
		`PATCH /api/v1/namespaces/ns/services/a/status {"metadata":{"$deleteFromPrimitiveList/finalizers":["berth.dev/load-balancer-cleanup"]}}`,
		`PATCH /api/v1/nodes/n ` + add,
		`PUT /api/v1/namespaces/ns/services/a ` + add,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got)\n%s", diff)
	}
}
