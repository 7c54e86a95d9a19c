package lbclass

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	servicehelper "k8s.io/cloud-provider/service/helpers"
)

// FinalizerTransport wraps the service controller's transport so that its
// patches of Services put and remove Finalizer where they name upstream's
// cleanup finalizer (the view shows Finalizer as upstream's). Every other
// request passes unchanged.
func FinalizerTransport(rt http.RoundTripper) http.RoundTripper { return finalizerTransport{rt} }

type finalizerTransport struct{ rt http.RoundTripper }

func (f finalizerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPatch || req.Body == nil || !strings.Contains(req.URL.Path, "/services/") {
		return f.rt.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	body = translatePatch(body)
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return f.rt.RoundTrip(out)
}

// translatePatch names Finalizer wherever a patch names upstream's
// cleanup finalizer (a JSON string; a finalizer appears in no other
// field of the controller's patches).
func translatePatch(body []byte) []byte {
	return bytes.ReplaceAll(body, []byte(`"`+servicehelper.LoadBalancerCleanupFinalizer+`"`), []byte(`"`+Finalizer+`"`))
}
