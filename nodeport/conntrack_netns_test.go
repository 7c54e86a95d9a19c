package nodeport

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestConntrackPropertiesInNetns checks two properties docs/forwarding.md
// leaves to conntrack's NAT: an ICMP error about a forwarded packet reaches
// the client translated (a UDP datagram to a NodePort nobody listens on is
// refused as coming from the load-balancer address, so the client's
// connected socket sees ECONNREFUSED at once, not silence), and an
// established TCP connection keeps working after its rule is removed, while
// a new one no longer gets through.
func TestConntrackPropertiesInNetns(t *testing.T) {
	l := newLab(t)
	echo := ap(nodeIP4, 30090)
	var ln net.Listener
	if err := inNetns(nsPath(l.node), func() (err error) { ln, err = net.Listen("tcp", echo.String()); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo %s\n", sc.Text())
				}
			}()
		}
	}()
	rules := []Rule{
		{Address: svcIP4, Protocol: TCP, Port: 90, NodeIP: nodeIP4, NodePort: 30090},
		{Address: svcIP4, Protocol: UDP, Port: 54, NodeIP: nodeIP4, NodePort: 30054}, // nobody listens
	}
	if err := l.fwd.Sync(l.ctx, rules); err != nil {
		t.Fatal(err)
	}

	t.Run("ICMP error translated", func(t *testing.T) {
		start := time.Now()
		_, err := ask(l.client, "udp", ap(svcIP4, 54))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("UDP to %s: %v after %v; want connection refused (the port unreachable, translated)", ap(svcIP4, 54), err, time.Since(start))
		}
		t.Logf("refused after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("established connection survives its rule's removal", func(t *testing.T) {
		var c net.Conn
		if err := inNetns(nsPath(l.client), func() (err error) {
			c, err = net.DialTimeout("tcp", ap(svcIP4, 90).String(), time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		exchange := func(msg string) error {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
				return err
			}
			got, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if got != "echo "+msg+"\n" {
				return fmt.Errorf("got %q", got)
			}
			return nil
		}
		if err := exchange("before"); err != nil {
			t.Fatalf("before the removal: %v", err)
		}
		if err := l.fwd.Sync(l.ctx, nil); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := exchange(fmt.Sprintf("after-%d", i)); err != nil {
				t.Fatalf("exchange %d after the rule was removed: %v", i, err)
			}
		}
		if got, err := ask(l.client, "tcp", ap(svcIP4, 90)); err == nil {
			t.Errorf("a new connection after the removal answered %q; want none", got)
		}
	})
}
