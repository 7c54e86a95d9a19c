package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/api/v1alpha1"
)

// npCloud is the NodePort of the cloud-mapped Service.
const npCloud = 30100

// TestSpeakerForwardsCloudAddress checks the speaker's half of the AWS
// backend's eip mode with real nftables and traffic: a private address
// that berth-ccm mapped to a node (Node annotation
// forward.berth.dev/<address>) is forwarded by that node's speaker to the
// Service's NodePort, follows the annotation to another node, and stops
// when it is removed. The router's host route stands in for the VPC, which
// delivers a secondary private address to the instance holding it;
// TestCCMAWS covers the CCM writing the annotation.
func TestSpeakerForwardsCloudAddress(t *testing.T) {
	fl := newFwdLab(t)
	fl.listen(t, "tcp", npCloud)
	e := fl.e
	e.namespace(t, "cloud", nil)
	// A class no Berth controller handles: only the annotation forwards it.
	e.service(t, "cloud", "web", withClass("example.com/elsewhere"), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npCloud}}
	})
	private := netip.MustParseAddr("198.19.7.10")
	key := v1alpha1.NodeAnnotationForwardPrefix + private.String()
	annotate := func(node string, value *string) {
		t.Helper()
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
		if _, err := e.kube.CoreV1().Nodes().Patch(t.Context(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	route := func(n *labNode) {
		t.Helper()
		mustExec(t, fl.router.Host, "ip", "route", "replace", private.String()+"/32", "via", n.host.IPv4.String())
	}
	inTable := func(n *labNode) bool {
		out, err := n.host.Exec(t.Context(), "nft", "list", "table", "inet", "berth")
		return err == nil && strings.Contains(out, private.String())
	}
	value := "cloud/web"
	n1, n2 := fl.nodes[0], fl.nodes[1]

	route(n1)
	start := time.Now()
	annotate(n1.name, &value)
	a, took := waitAnswer(t, fl.get, private, 80, npCloud, settle)
	if a.node != n1.name {
		t.Fatalf("answered by %s, want %s, the annotated node", a.node, n1.name)
	}
	t.Logf("%s:80 forwarded by %s %v after the annotation (%v of polling)", private, n1.name, time.Since(start).Round(time.Millisecond), took)
	if inTable(n2) {
		t.Errorf("%s forwards %s without the annotation", n2.name, private)
	}

	// The CCM moves the mapping: annotation and (in AWS) the address.
	annotate(n2.name, &value)
	route(n2)
	annotate(n1.name, nil)
	poll(t, settle, "the moved address answered by "+n2.name, func() error {
		a, err := fl.get(t.Context(), private, 80)
		if err == nil && a.node != n2.name {
			err = fmt.Errorf("answered by %s", a.node)
		}
		return err
	})
	poll(t, settle, n1.name+" to stop forwarding "+private.String(), func() error {
		if inTable(n1) {
			return errors.New("still in its table")
		}
		return nil
	})

	annotate(n2.name, nil)
	waitNoAnswer(t, fl.get, private, 80, settle)
	if inTable(n2) {
		t.Errorf("%s still forwards %s after the annotation was removed", n2.name, private)
	}
}
