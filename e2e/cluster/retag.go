package cluster

import (
	"context"
	"fmt"
)

// TagBerthImages gives Berth's imported images (tagged BerthTag) the
// second tag tag in every node's containerd, as if a new release had been
// pushed and pulled: same content, a new name, so that `helm upgrade
// --set image.tag=<tag>` changes every Berth Pod's image and rolls them.
func (c *Cluster) TagBerthImages(ctx context.Context, tag string) error {
	// The repositories of the chart's default values.
	repos := []string{"ghcr.io/berthlb/berth-controller", "ghcr.io/berthlb/berth-speaker", "ghcr.io/berthlb/berth-ccm"}
	for _, n := range c.Nodes {
		for _, repo := range repos {
			if _, err := n.ctr(ctx, "images", "tag", "--force", repo+":"+c.BerthTag, repo+":"+tag); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
	}
	return nil
}
