package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Processes returns the processes running in the node's cgroups (its pods'
// containers, and the shims), each as "pid:command" (the command as
// /proc/<pid>/comm gives it, cut at 15 bytes).
func (n *Node) Processes() []string {
	seen := map[string]bool{}
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, n.cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, pid := range strings.Fields(string(data)) {
				seen[pid] = true
			}
			return nil
		})
	}
	var out []string
	for pid := range seen {
		comm, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		if err == nil {
			out = append(out, fmt.Sprintf("%s:%s", pid, strings.TrimSpace(string(comm))))
		}
	}
	sort.Strings(out)
	return out
}
