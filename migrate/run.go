package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

// Options are the settings of `berth migrate`.
type Options struct {
	// Files are YAML files to read; "-" is standard input.
	Files []string
	// FromCluster reads the live cluster that Kubeconfig and Context name
	// (kubectl's rules: $KUBECONFIG, then ~/.kube/config, when empty).
	FromCluster bool
	Kubeconfig  string
	Context     string
	// Output is the file for Berth's resources; "" or "-" is standard
	// output.
	Output string
	// Report is the file for the report; "" is standard error.
	Report string
}

// Streams are the process's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Run reads the sources, converts them and writes the resources and the
// report.
func Run(ctx context.Context, opts Options, st Streams) error {
	if len(opts.Files) == 0 && !opts.FromCluster {
		return errors.New("nothing to read: give -f FILE (or -f - for standard input) or --from-cluster")
	}
	var objs []*unstructured.Unstructured
	for _, f := range opts.Files {
		got, err := readFile(f, st.In)
		if err != nil {
			return err
		}
		objs = append(objs, got...)
	}
	if opts.FromCluster {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = opts.Kubeconfig
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			return fmt.Errorf("load kubeconfig: %w", err)
		}
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("dynamic client: %w", err)
		}
		got, err := ReadCluster(ctx, dyn)
		if err != nil {
			return err
		}
		objs = append(objs, got...)
	}
	res := Convert(objs)
	if err := writeTo(opts.Output, st.Out, func(w io.Writer) error { return WriteYAML(w, res) }); err != nil {
		return err
	}
	return writeTo(opts.Report, st.Err, func(w io.Writer) error { return WriteReport(w, res) })
}

func readFile(name string, stdin io.Reader) ([]*unstructured.Unstructured, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read sources: %w", err)
		}
		defer f.Close()
		r = f
	}
	objs, err := ReadYAML(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return objs, nil
}

func writeTo(name string, def io.Writer, write func(io.Writer) error) error {
	if slices.Contains([]string{"", "-"}, name) {
		return write(def)
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Close()
}
