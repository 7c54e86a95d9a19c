package status

import (
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/berthlb/berth/api/v1alpha1"
)

// barWidth is the number of cells of a usage bar.
const barWidth = 20

// writePools writes one line per pool and family: exact counts as the
// controller wrote them (decimal strings, so a /48 of IPv6 is exact), a
// usage bar, and whether the pool is Ready.
func writePools(out io.Writer, pools []v1alpha1.BerthIPPool) error {
	slices.SortFunc(pools, func(a, b v1alpha1.BerthIPPool) int { return strings.Compare(a.Name, b.Name) })
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tFAMILY\tUSED\tFREE\tTOTAL\tUSAGE\tSERVICES\tREADY")
	for i := range pools {
		p := &pools[i]
		ready := "Unknown"
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady); c != nil {
			ready = string(c.Status)
			if c.Status != "True" && c.Reason != "" {
				ready += " (" + c.Reason + ")"
			}
		}
		families := []struct {
			name   string
			counts *v1alpha1.AddressCounts
		}{{"IPv4", p.Status.IPv4}, {"IPv6", p.Status.IPv6}}
		wrote := false
		for _, f := range families {
			if f.counts == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, f.name, f.counts.Used, f.counts.Free, f.counts.Total,
				usageBar(f.counts.Used, f.counts.Total), p.Status.HolderCount, ready)
			wrote = true
		}
		if !wrote {
			// Not written yet: a new pool, or no controller runs.
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%d\t%s (no status yet)\n", p.Name, p.Status.HolderCount, ready)
		}
	}
	return tw.Flush()
}

// usageBar draws used/total as a bar of barWidth cells and a percentage.
// Any use shows at least one cell and at least 0.1%, so that a huge IPv6
// pool with a few addresses held does not look empty; a full pool shows
// 100% only when it is exactly full.
func usageBar(used, total string) string {
	u, ok1 := new(big.Int).SetString(used, 10)
	t, ok2 := new(big.Int).SetString(total, 10)
	if !ok1 || !ok2 || t.Sign() <= 0 || u.Sign() < 0 {
		return "?"
	}
	if u.Cmp(t) > 0 {
		u = t
	}
	// Per mille, rounded down, so that 99.97% is not shown as full.
	pm := new(big.Int).Div(new(big.Int).Mul(u, big.NewInt(1000)), t).Int64()
	cells := int(pm * barWidth / 1000)
	if u.Sign() > 0 {
		pm, cells = max(pm, 1), max(cells, 1)
	}
	return fmt.Sprintf("[%s%s] %d.%d%%", strings.Repeat("#", cells), strings.Repeat(".", barWidth-cells), pm/10, pm%10)
}
