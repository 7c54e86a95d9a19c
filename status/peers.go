package status

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/berthlb/berth/api/v1alpha1"
)

// writePeers writes one line per node and peer, from the speakers'
// BerthNodeStatuses: the session's state and for how long it has been
// established, the prefixes sent and received, whether the node applied the
// peer's configuration and the last error. A peer that no node has a
// session with gets a line of its own, so that it is not missed.
func writePeers(out io.Writer, peers []v1alpha1.BerthBGPPeer, nodes []v1alpha1.BerthNodeStatus, now time.Time) error {
	slices.SortFunc(peers, func(a, b v1alpha1.BerthBGPPeer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(nodes, func(a, b v1alpha1.BerthNodeStatus) int { return strings.Compare(a.Name, b.Name) })
	where := map[string]string{}
	for i := range peers {
		where[peers[i].Name] = peerWhere(&peers[i].Spec)
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPEER\tADDRESS\tSTATE\tUP FOR\tSENT\tRECEIVED\tCONFIGURED\tLAST ERROR")
	seen := map[string]bool{}
	for i := range nodes {
		sessions := slices.Clone(nodes[i].Status.Sessions)
		slices.SortFunc(sessions, func(a, b v1alpha1.BerthBGPSession) int { return strings.Compare(a.Peer, b.Peer) })
		for _, s := range sessions {
			seen[s.Peer] = true
			addr, ok := where[s.Peer]
			if !ok {
				addr = "(peer deleted)"
			}
			up := "-"
			if s.State == "Established" && s.EstablishedSince != nil {
				up = duration.HumanDuration(now.Sub(s.EstablishedSince.Time))
			}
			configured := "True"
			if c := meta.FindStatusCondition(s.Conditions, v1alpha1.PeerConditionConfigured); c != nil && c.Status != "True" {
				configured = string(c.Status) + " (" + c.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", nodes[i].Name, s.Peer, addr, dash(s.State), up,
				s.PrefixesSent, s.PrefixesReceived, configured, dash(s.LastError))
		}
	}
	for i := range peers {
		if !seen[peers[i].Name] {
			fmt.Fprintf(tw, "-\t%s\t%s\t-\t-\t-\t-\t-\tno node has a session: its nodeSelector matches no node with a speaker\n", peers[i].Name, where[peers[i].Name])
		}
	}
	return tw.Flush()
}

// peerWhere is how a peer is reached: its address, or its interface on
// each node.
func peerWhere(s *v1alpha1.BerthBGPPeerSpec) string {
	if s.Interface != "" {
		return "interface " + s.Interface
	}
	return s.Address
}
