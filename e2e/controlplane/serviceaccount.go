package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// tokenLifetime is how long a token from TokenKubeconfig is valid: longer
// than any test or demo runs.
const tokenLifetime = 24 * 60 * 60

// ServiceAccountKubeconfig returns the path of a kubeconfig that
// authenticates as ServiceAccount namespace/name with a token from the
// TokenRequest API, authorized by exactly the RBAC the repository's
// manifests grant that account (LoadRBAC on ManifestsDir, then ApplyRBAC).
// Berth's processes in tests run with it, never with the admin token, so
// that a permission the manifests lack fails a test. The first call per
// account applies the RBAC; later calls return the same file.
func (cp *ControlPlane) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	dir, err := ManifestsDir()
	if err != nil {
		return "", err
	}
	return cp.ServiceAccountKubeconfigFrom(ctx, dir, namespace, name)
}

// ServiceAccountKubeconfigFrom is ServiceAccountKubeconfig with the RBAC
// taken from the manifests under dir, such as the chart rendered with
// values the default manifests do not use (berth-ccm's aws backend).
func (cp *ControlPlane) ServiceAccountKubeconfigFrom(ctx context.Context, dir, namespace, name string) (string, error) {
	return cp.serviceAccountKubeconfig(ctx, dir, namespace, name, "")
}

// NodeServiceAccountKubeconfig is ServiceAccountKubeconfig for the process
// of a DaemonSet on node: its token is bound to the account's Pod on that
// node (PodTokenKubeconfig), as the kubelet's projected token is, so that
// admission policies see the node it runs on. One file per node.
func (cp *ControlPlane) NodeServiceAccountKubeconfig(ctx context.Context, namespace, name, node string) (string, error) {
	dir, err := ManifestsDir()
	if err != nil {
		return "", err
	}
	return cp.serviceAccountKubeconfig(ctx, dir, namespace, name, node)
}

// serviceAccountKubeconfig applies the RBAC of the manifests under dir for
// namespace/name once, and returns the account's kubeconfig, bound to a
// Pod on node unless node is empty, one per node.
func (cp *ControlPlane) serviceAccountKubeconfig(ctx context.Context, dir, namespace, name, node string) (string, error) {
	key := dir + ":" + namespace + "/" + name
	cp.saMu.Lock()
	defer cp.saMu.Unlock()
	if path, ok := cp.saKubeconfigs[key+"@"+node]; ok {
		return path, nil
	}
	if !cp.saApplied[key] {
		rbac, err := LoadRBAC(dir, namespace, name)
		if err != nil {
			return "", err
		}
		if err := cp.ApplyRBAC(ctx, rbac); err != nil {
			return "", err
		}
		if cp.saApplied == nil {
			cp.saApplied = map[string]bool{}
		}
		cp.saApplied[key] = true
	}
	path, err := cp.tokenKubeconfig(ctx, namespace, name, node)
	if err != nil {
		return "", err
	}
	if cp.saKubeconfigs == nil {
		cp.saKubeconfigs = map[string]string{}
	}
	cp.saKubeconfigs[key+"@"+node] = path
	return path, nil
}

// ApplyRBAC creates r's objects, and the namespaces they live in, or
// replaces those that exist, with the admin client. It fails if a role that
// r refers to but does not define is missing from the cluster. The API
// server enforces a new admission policy a moment after it is created, not
// at once.
func (cp *ControlPlane) ApplyRBAC(ctx context.Context, r *RBAC) error {
	kube, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return fmt.Errorf("apply RBAC: %w", err)
	}
	namespaces := []string{r.ServiceAccount.Namespace}
	for _, o := range r.Roles {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range r.RoleBindings {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, ns := range namespaces {
		if err := ensureNamespace(ctx, kube, ns); err != nil {
			return err
		}
	}
	if err := upsert(ctx, r.ServiceAccount.DeepCopy(), kube.CoreV1().ServiceAccounts(r.ServiceAccount.Namespace)); err != nil {
		return err
	}
	rbac := kube.RbacV1()
	for _, o := range r.ClusterRoles {
		if err := upsert(ctx, o.DeepCopy(), rbac.ClusterRoles()); err != nil {
			return err
		}
	}
	for _, o := range r.Roles {
		if err := upsert(ctx, o.DeepCopy(), rbac.Roles(o.Namespace)); err != nil {
			return err
		}
	}
	for _, o := range r.ClusterRoleBindings {
		if err := upsert(ctx, o.DeepCopy(), rbac.ClusterRoleBindings()); err != nil {
			return err
		}
	}
	for _, o := range r.RoleBindings {
		if err := upsert(ctx, o.DeepCopy(), rbac.RoleBindings(o.Namespace)); err != nil {
			return err
		}
	}
	for _, n := range r.ExternalClusterRoles {
		if _, err := rbac.ClusterRoles().Get(ctx, n, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("apply RBAC: ClusterRole %s, bound but not in the manifests: %w", n, err)
		}
	}
	admission := kube.AdmissionregistrationV1()
	for _, o := range r.Policies {
		if err := upsert(ctx, o.DeepCopy(), admission.ValidatingAdmissionPolicies()); err != nil {
			return err
		}
	}
	for _, o := range r.PolicyBindings {
		if err := upsert(ctx, o.DeepCopy(), admission.ValidatingAdmissionPolicyBindings()); err != nil {
			return err
		}
	}
	for _, key := range r.ExternalRoles {
		ns, n, _ := strings.Cut(key, "/")
		if _, err := rbac.Roles(ns).Get(ctx, n, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("apply RBAC: Role %s, bound but not in the manifests: %w", key, err)
		}
	}
	return nil
}

// object is what upsert needs of a typed object.
type object interface {
	metav1.Object
}

// writer is the part of a typed client that upsert uses.
type writer[T any] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
	Get(context.Context, string, metav1.GetOptions) (T, error)
}

// upsert creates o, or replaces the object of its name.
func upsert[T object](ctx context.Context, o T, c writer[T]) error {
	_, err := c.Create(ctx, o, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur T
		if cur, err = c.Get(ctx, o.GetName(), metav1.GetOptions{}); err == nil {
			o.SetResourceVersion(cur.GetResourceVersion())
			_, err = c.Update(ctx, o, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("apply %T %s: %w", o, o.GetName(), err)
	}
	return nil
}

func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// TokenKubeconfig creates namespace namespace and ServiceAccount name in it
// if they are missing, requests a token for the account (TokenRequest, valid
// for a day) and writes a kubeconfig with it and the control plane's CA. It
// grants nothing: see ApplyRBAC. The file is removed by Stop. The token is
// bound to no object: see PodTokenKubeconfig.
func (cp *ControlPlane) TokenKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	return cp.tokenKubeconfig(ctx, namespace, name, "")
}

// tokenKubeconfig is TokenKubeconfig with the token bound to the account's
// Pod on node (NodePod) unless node is empty.
func (cp *ControlPlane) tokenKubeconfig(ctx context.Context, namespace, name, node string) (string, error) {
	kube, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	if err := ensureNamespace(ctx, kube, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create ServiceAccount %s/%s: %w", namespace, name, err)
	}
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](tokenLifetime)}
	if node != "" {
		pod, err := NodePod(ctx, kube, namespace, name, node)
		if err != nil {
			return "", err
		}
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	}
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request token for %s/%s: %w", namespace, name, err)
	}
	dir := filepath.Join(cp.dir, "serviceaccounts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, namespace+"-"+name+"-*.kubeconfig")
	if err != nil {
		return "", err
	}
	path := f.Name()
	_ = f.Close()
	user := "system:serviceaccount:" + namespace + ":" + name
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["berth-e2e"] = &clientcmdapi.Cluster{Server: cp.url, CertificateAuthorityData: cp.creds.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[user] = &clientcmdapi.Context{Cluster: "berth-e2e", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = user
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig of %s/%s: %w", namespace, name, err)
	}
	return path, nil
}
