package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/berthlb/berth/api/v1alpha1"
)

// writeTable writes one line per Service: its addresses, who announces
// them and the verdict of each.
func writeTable(out io.Writer, snap Snapshot, svcs []*corev1.Service) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tADDRESS\tPOOL\tANNOUNCED BY\tVERDICT")
	for _, svc := range svcs {
		addrs := Analyze(snap, svc)
		if len(addrs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t%s\n", svc.Namespace, svc.Name, noAddress(svc))
		}
		for _, a := range addrs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", svc.Namespace, svc.Name, a.Addr, dash(a.Pool), announcedBy(a), a.Verdict)
		}
	}
	return tw.Flush()
}

// writeService writes one Service's report.
func writeService(out io.Writer, snap Snapshot, svc *corev1.Service, events []corev1.Event, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	addrs := Analyze(snap, svc)
	fmt.Fprintf(tw, "Service:\t%s/%s\n", svc.Namespace, svc.Name)
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		fmt.Fprintf(tw, "Traffic policy:\tLocal (announced only by nodes with a ready endpoint)\n")
	}
	for _, a := range addrs {
		fmt.Fprintf(tw, "Address:\t%s (pool %s)\n", a.Addr, dash(a.Pool))
		fmt.Fprintf(tw, "  BGP:\t%s\n", bgpLine(a))
		fmt.Fprintf(tw, "  Layer 2:\t%s\n", dash(strings.Join(a.L2, ", ")))
		forwarding := "-"
		if len(a.BGP)+len(a.L2) > 0 {
			forwarding = "in place on every announcing node"
		}
		if len(a.Withheld) > 0 {
			var w []string
			for _, x := range a.Withheld {
				w = append(w, fmt.Sprintf("failed on %s (withdrawn): %s", x.Node, x.Reason))
			}
			forwarding = strings.Join(w, "; ")
		}
		fmt.Fprintf(tw, "  Forwarding:\t%s\n", forwarding)
	}
	if len(addrs) == 0 {
		fmt.Fprintf(tw, "Address:\t-\n")
	}
	if len(svc.Status.Conditions) > 0 {
		fmt.Fprintf(tw, "Conditions:\n")
		for _, c := range svc.Status.Conditions {
			fmt.Fprintf(tw, "  %s\t%s\t%s: %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(events) > 0 {
		fmt.Fprintln(out, "Events:")
		ew := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		fmt.Fprintln(ew, "  LAST SEEN\tTYPE\tREASON\tFROM\tMESSAGE")
		for _, e := range events {
			from := e.Source.Component
			if e.Source.Host != "" {
				from += ", " + e.Source.Host
			}
			fmt.Fprintf(ew, "  %s\t%s\t%s\t%s\t%s\n", duration.HumanDuration(now.Sub(eventTime(e))), e.Type, e.Reason, dash(from), e.Message)
		}
		if err := ew.Flush(); err != nil {
			return err
		}
	}
	if len(addrs) == 0 {
		_, err := fmt.Fprintf(out, "Verdict: %s\n", noAddress(svc))
		return err
	}
	for _, a := range addrs {
		if _, err := fmt.Fprintf(out, "Verdict: %s %s\n", a.Addr, a.Verdict); err != nil {
			return err
		}
	}
	return nil
}

// bgpLine lists the nodes announcing an address over BGP with their peers.
func bgpLine(a Address) string {
	var parts []string
	for _, b := range a.BGP {
		peers := append(append([]string{}, b.Peers...), b.Down...)
		parts = append(parts, fmt.Sprintf("%s to %s", b.Node, dash(strings.Join(peers, ", "))))
	}
	return dash(strings.Join(parts, "; "))
}

// announcedBy is the table's short form: the BGP nodes and the layer-2
// owner.
func announcedBy(a Address) string {
	var parts []string
	if len(a.BGP) > 0 {
		var nodes []string
		for _, b := range a.BGP {
			nodes = append(nodes, b.Node)
		}
		parts = append(parts, "bgp: "+strings.Join(nodes, ","))
	}
	if len(a.L2) > 0 {
		parts = append(parts, "l2: "+strings.Join(a.L2, ","))
	}
	return dash(strings.Join(parts, " "))
}

// noAddress is the verdict on a Service without an address: the
// controller's condition says why.
func noAddress(svc *corev1.Service) string {
	for _, c := range svc.Status.Conditions {
		if c.Type == v1alpha1.ServiceConditionAddressAllocated && c.Status != "True" {
			return "not announced: no address allocated: " + c.Message
		}
	}
	return "not announced: no address allocated"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
