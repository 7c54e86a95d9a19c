package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// uninstallMark is what the controller needs of lifecycle.Watcher.
type uninstallMark interface {
	Uninstalling() bool
	HasSynced() bool
	OnChange(f func()) error
}

// WatchUninstall makes the controller follow the mark of an uninstall
// (package internal/lifecycle): once it is set, every BerthIPPool loses the
// finalizer berth.dev/pool-in-use and gets it no more, so that nothing
// blocks deleting the pools or the CRDs after Berth is gone. Call it before
// Run and before the mark's watch starts.
func (c *Controller) WatchUninstall(m uninstallMark) error {
	c.uninstall = m
	c.synced = append(c.synced, m.HasSynced)
	return m.OnChange(func() {
		if !m.Uninstalling() {
			return
		}
		pools, err := c.pools.List(labels.Everything())
		if err != nil {
			utilruntime.HandleError(fmt.Errorf("list pools from cache: %w", err))
			return
		}
		for _, p := range pools {
			c.poolQueue.Add(p.Name)
		}
	})
}

// uninstalling reports whether Berth is being uninstalled.
func (c *Controller) uninstalling() bool {
	return c.uninstall != nil && c.uninstall.Uninstalling()
}
