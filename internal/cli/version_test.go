package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version/verflag"
)

// fakeCommand is the part of a *cobra.Command AnswerVersion uses.
type fakeCommand struct {
	fs  *pflag.FlagSet
	out bytes.Buffer
}

func (c *fakeCommand) Flags() *pflag.FlagSet  { return c.fs }
func (c *fakeCommand) OutOrStdout() io.Writer { return &c.out }

func TestAnswerVersion(t *testing.T) {
	errRan := errors.New("ran")
	tests := []struct {
		name        string
		componentFS bool // component-base's --version (berth-ccm) instead of Main's bool flag
		args        []string
		wantVersion bool
	}{
		{name: "bool flag", args: []string{"--version"}, wantVersion: true},
		{name: "bool flag false", args: []string{"--version=false"}},
		{name: "no flag", args: nil},
		// component-base's flag is one process-wide value: unset comes first.
		{name: "component-base unset", componentFS: true, args: nil},
		{name: "component-base flag", componentFS: true, args: []string{"--version"}, wantVersion: true},
		{name: "component-base raw", componentFS: true, args: []string{"--version=raw"}, wantVersion: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			if tt.componentFS {
				verflag.AddFlags(fs)
			} else {
				fs.Bool(versionFlag, false, "")
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c := &fakeCommand{fs: fs}
			run := AnswerVersion("berth-test", func(*fakeCommand, []string) error { return errRan })
			err := run(c, nil)
			if tt.wantVersion {
				if err != nil || !strings.HasPrefix(c.out.String(), "berth-test version ") {
					t.Errorf("got error %v and output %q, want the version line", err, c.out.String())
				}
				return
			}
			if !errors.Is(err, errRan) || c.out.Len() != 0 {
				t.Errorf("got error %v and output %q, want the command to run", err, c.out.String())
			}
		})
	}
}
