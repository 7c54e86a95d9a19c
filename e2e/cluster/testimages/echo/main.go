// Command echo is the test cluster's backend: an HTTP server on $PORT
// (default 8080) that answers every request with one line naming the Pod and
// Node that answered ($POD_NAME, $NODE_NAME, from the downward API) and the
// client address it saw, so tests can tell which pods answered and whether
// the client's own address was kept.
//
//	pod=echo-abc node=node1 client=198.18.7.9:43122
//
// `echo get URL` is the client instead: it GETs URL until it answers (at
// most 30 seconds), prints the answer and exits 0, or exits 1.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	pod, node := os.Getenv("POD_NAME"), os.Getenv("NODE_NAME")
	srv := &http.Server{
		Addr:              ":" + port,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "pod=%s node=%s client=%s\n", pod, node, r.RemoteAddr)
		}),
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		// $SHUTDOWN_DELAY: keep answering new requests for that long, as
		// an application behind a load balancer should, then finish
		// those in flight.
		delay, _ := time.ParseDuration(os.Getenv("SHUTDOWN_DELAY"))
		time.Sleep(delay)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// get GETs url until it answers 200, for at most 30 seconds.
func get(url string) int {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Print(string(body))
				return 0
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		time.Sleep(500 * time.Millisecond)
	}
}
