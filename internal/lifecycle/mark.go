package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
)

const (
	// DefaultConfigMap is the ConfigMap, in Berth's namespace, that marks
	// an uninstall.
	DefaultConfigMap = "berth-lifecycle"
	// KeyUninstall is the key whose value "true" marks an uninstall.
	KeyUninstall = "uninstall"
	// cleanedPrefix starts the key a speaker reports its node under, once
	// the node holds none of Berth's state.
	cleanedPrefix = "cleaned."
)

// Uninstalling reports whether cm marks an uninstall.
func Uninstalling(cm *corev1.ConfigMap) bool {
	return cm != nil && cm.Data[KeyUninstall] == "true"
}

// Cleaned returns the nodes whose speakers reported in cm that they removed
// Berth's state.
func Cleaned(cm *corev1.ConfigMap) map[string]bool {
	out := map[string]bool{}
	if cm == nil {
		return out
	}
	for k := range cm.Data {
		if node, ok := strings.CutPrefix(k, cleanedPrefix); ok {
			out[node] = true
		}
	}
	return out
}

// patchData merges data into the ConfigMap's data (a JSON merge patch, so
// that the speakers' concurrent reports never overwrite each other).
func patchData(ctx context.Context, cms typedcorev1.ConfigMapInterface, name string, data map[string]string) error {
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return err
	}
	if _, err := cms.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch ConfigMap %s: %w", name, err)
	}
	return nil
}

// MarkUninstall marks the uninstall in the ConfigMap name.
func MarkUninstall(ctx context.Context, cms typedcorev1.ConfigMapInterface, name string) error {
	return patchData(ctx, cms, name, map[string]string{KeyUninstall: "true"})
}

// ReportCleaned records that node holds none of Berth's state any more.
func ReportCleaned(ctx context.Context, cms typedcorev1.ConfigMapInterface, name, node string) error {
	return patchData(ctx, cms, name, map[string]string{cleanedPrefix + node: time.Now().UTC().Format(time.RFC3339)})
}

// Watcher follows the ConfigMap that marks an uninstall. It watches that
// one object only (a field selector on its name), so that a Role may grant
// it by name.
type Watcher struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	key      string
}

// NewWatcher returns a Watcher of the ConfigMap namespace/name; Start
// starts it.
func NewWatcher(kube kubernetes.Interface, namespace, name string) *Watcher {
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	return &Watcher{factory: f, informer: f.Core().V1().ConfigMaps().Informer(), key: namespace + "/" + name}
}

// OnChange calls f on every change of the ConfigMap. Call it before Start.
func (w *Watcher) OnChange(f func()) error {
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f() },
		UpdateFunc: func(any, any) { f() },
		DeleteFunc: func(any) { f() },
	})
	if err != nil {
		return fmt.Errorf("watch ConfigMap %s: %w", w.key, err)
	}
	return nil
}

// Start starts watching until ctx ends.
func (w *Watcher) Start(ctx context.Context) { w.factory.Start(ctx.Done()) }

// Shutdown waits for the watch to end, after ctx passed to Start ended.
func (w *Watcher) Shutdown() { w.factory.Shutdown() }

// HasSynced reports whether the first list has been read.
func (w *Watcher) HasSynced() bool { return w.informer.HasSynced() }

// Uninstalling reports whether the ConfigMap, as last seen, marks an
// uninstall.
func (w *Watcher) Uninstalling() bool {
	obj, ok, err := w.informer.GetStore().GetByKey(w.key)
	if err != nil || !ok {
		return false
	}
	cm, _ := obj.(*corev1.ConfigMap)
	return Uninstalling(cm)
}
