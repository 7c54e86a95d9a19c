package controlplane

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// RBAC is what the shipped manifests grant one ServiceAccount: the account
// itself, every binding naming it as a subject, and the roles those bindings
// refer to. Roles a binding refers to that the manifests do not define (the
// API server's bootstrap roles, such as system:auth-delegator) are in
// ExternalClusterRoles and ExternalRoles: ApplyRBAC checks that they exist.
// Policies and PolicyBindings are every ValidatingAdmissionPolicy of the
// manifests with its bindings, which narrow what RBAC grants (which users a
// policy concerns is said in its CEL, so all of them are taken).
type RBAC struct {
	ServiceAccount      *corev1.ServiceAccount
	ClusterRoles        []*rbacv1.ClusterRole
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
	Roles               []*rbacv1.Role
	RoleBindings        []*rbacv1.RoleBinding
	// ExternalClusterRoles are names; ExternalRoles are namespace/name.
	ExternalClusterRoles []string
	ExternalRoles        []string
	Policies             []*admissionregistrationv1.ValidatingAdmissionPolicy
	PolicyBindings       []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// ManifestsDir returns the repository's manifests directory.
func ManifestsDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "manifests"), nil
}

// rbacKinds are the kinds LoadRBAC decodes; every other document is skipped.
var rbacKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

// LoadRBAC reads every YAML or JSON document under dir, recursively (one
// object per document, any number of documents per file, so a single
// bundled install file works as well as one file per object; directories
// named examples or crds are skipped), and returns what it grants the
// ServiceAccount namespace/name. It does not depend on file names: objects
// are picked by kind and by subject. It fails if the manifests define no
// such ServiceAccount or bind it to nothing, or define one object twice
// differently.
func LoadRBAC(dir, namespace, name string) (*RBAC, error) {
	objs, err := readRBACObjects(dir)
	if err != nil {
		return nil, fmt.Errorf("load RBAC of %s/%s: %w", namespace, name, err)
	}
	r := &RBAC{}
	clusterRoles := map[string]*rbacv1.ClusterRole{}
	roles := map[string]*rbacv1.Role{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			if o.Namespace == namespace && o.Name == name {
				r.ServiceAccount = o
			}
		case *rbacv1.ClusterRole:
			clusterRoles[o.Name] = o
		case *rbacv1.Role:
			roles[o.Namespace+"/"+o.Name] = o
		case *rbacv1.ClusterRoleBinding:
			if bindsServiceAccount(o.Subjects, "", namespace, name) {
				r.ClusterRoleBindings = append(r.ClusterRoleBindings, o)
			}
		case *rbacv1.RoleBinding:
			if bindsServiceAccount(o.Subjects, o.Namespace, namespace, name) {
				r.RoleBindings = append(r.RoleBindings, o)
			}
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			r.Policies = append(r.Policies, o)
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			r.PolicyBindings = append(r.PolicyBindings, o)
		}
	}
	if r.ServiceAccount == nil {
		return nil, fmt.Errorf("load RBAC: no ServiceAccount %s/%s under %s", namespace, name, dir)
	}
	if len(r.ClusterRoleBindings)+len(r.RoleBindings) == 0 {
		return nil, fmt.Errorf("load RBAC: nothing under %s binds ServiceAccount %s/%s", dir, namespace, name)
	}
	useClusterRole := func(n string) {
		if cr, ok := clusterRoles[n]; ok {
			if !slices.Contains(r.ClusterRoles, cr) {
				r.ClusterRoles = append(r.ClusterRoles, cr)
			}
		} else if !slices.Contains(r.ExternalClusterRoles, n) {
			r.ExternalClusterRoles = append(r.ExternalClusterRoles, n)
		}
	}
	for _, b := range r.ClusterRoleBindings {
		useClusterRole(b.RoleRef.Name)
	}
	for _, b := range r.RoleBindings {
		if b.RoleRef.Kind == "ClusterRole" {
			useClusterRole(b.RoleRef.Name)
			continue
		}
		key := b.Namespace + "/" + b.RoleRef.Name
		if role, ok := roles[key]; ok {
			if !slices.Contains(r.Roles, role) {
				r.Roles = append(r.Roles, role)
			}
		} else if !slices.Contains(r.ExternalRoles, key) {
			r.ExternalRoles = append(r.ExternalRoles, key)
		}
	}
	return r, nil
}

// bindsServiceAccount reports whether subjects name ServiceAccount
// namespace/name. A RoleBinding's subject without a namespace is in the
// binding's own (bindingNS).
func bindsServiceAccount(subjects []rbacv1.Subject, bindingNS, namespace, name string) bool {
	for _, s := range subjects {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNS
		}
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == name && ns == namespace {
			return true
		}
	}
	return false
}

// readRBACObjects decodes the RBAC objects and ServiceAccounts under dir,
// each once.
func readRBACObjects(dir string) ([]runtime.Object, error) {
	var out []runtime.Object
	seen := map[string]runtime.Object{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (d.Name() == "examples" || d.Name() == "crds") {
				return filepath.SkipDir
			}
			return nil
		}
		if !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(path)) {
			return nil
		}
		objs, err := decodeRBACFile(path)
		if err != nil {
			return err
		}
		for _, o := range objs {
			key := identity(o)
			if prev, ok := seen[key]; ok {
				if !equality.Semantic.DeepEqual(prev, o) {
					return fmt.Errorf("%s: %s is defined twice, differently", path, key)
				}
				continue
			}
			seen[key] = o
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decodeRBACFile returns the objects of rbacKinds in a file of YAML or JSON
// documents, including those inside a v1 List.
func decodeRBACFile(path string) ([]runtime.Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []runtime.Object
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		items := []unstructured.Unstructured{*u}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			items = list.Items
		}
		for _, item := range items {
			o, err := typedRBAC(&item)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if o != nil {
				out = append(out, o)
			}
		}
	}
}

// typedRBAC converts u to its typed object if it is one of rbacKinds, and
// returns nil otherwise.
func typedRBAC(u *unstructured.Unstructured) (runtime.Object, error) {
	gvk := u.GroupVersionKind()
	if !slices.Contains(rbacKinds, gvk.Kind) {
		return nil, nil
	}
	var o runtime.Object
	switch {
	case gvk.Kind == "ServiceAccount" && gvk.GroupVersion() == corev1.SchemeGroupVersion:
		o = &corev1.ServiceAccount{}
	case gvk.Kind == "ValidatingAdmissionPolicy" && gvk.GroupVersion() == admissionregistrationv1.SchemeGroupVersion:
		o = &admissionregistrationv1.ValidatingAdmissionPolicy{}
	case gvk.Kind == "ValidatingAdmissionPolicyBinding" && gvk.GroupVersion() == admissionregistrationv1.SchemeGroupVersion:
		o = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	case gvk.GroupVersion() != rbacv1.SchemeGroupVersion:
		return nil, fmt.Errorf("%s %s: unexpected apiVersion %s", gvk.Kind, u.GetName(), u.GetAPIVersion())
	case gvk.Kind == "ClusterRole":
		o = &rbacv1.ClusterRole{}
	case gvk.Kind == "ClusterRoleBinding":
		o = &rbacv1.ClusterRoleBinding{}
	case gvk.Kind == "Role":
		o = &rbacv1.Role{}
	case gvk.Kind == "RoleBinding":
		o = &rbacv1.RoleBinding{}
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, o, true); err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	return o, nil
}

// identity is kind/namespace/name of one of the typed objects.
func identity(o runtime.Object) string {
	switch o := o.(type) {
	case *corev1.ServiceAccount:
		return "ServiceAccount " + o.Namespace + "/" + o.Name
	case *rbacv1.ClusterRole:
		return "ClusterRole " + o.Name
	case *rbacv1.ClusterRoleBinding:
		return "ClusterRoleBinding " + o.Name
	case *rbacv1.Role:
		return "Role " + o.Namespace + "/" + o.Name
	case *rbacv1.RoleBinding:
		return "RoleBinding " + o.Namespace + "/" + o.Name
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return "ValidatingAdmissionPolicy " + o.Name
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return "ValidatingAdmissionPolicyBinding " + o.Name
	}
	return fmt.Sprintf("%T", o)
}
