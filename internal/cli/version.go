package cli

import (
	"context"
	"fmt"
	"runtime/debug"
)

const versionUsage = `Usage:
  dps-conform version

Prints the module version of this binary ("(devel)" for a build from a work
tree), the VCS revision when the build recorded one, and the Go version.
`

func versionCmd(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet("version", versionUsage)
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprintln(env.Stdout, versionLine(bi, ok))
	return nil
}

// versionLine renders build info as
// "dps-conform v1.2.3 (rev 0123456789ab, modified) go1.26.0".
func versionLine(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return progName + " (devel)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	line := progName + " " + version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		line += " (rev " + rev
		if modified == "true" {
			line += ", modified"
		}
		line += ")"
	}
	if bi.GoVersion != "" {
		line += " " + bi.GoVersion
	}
	return line
}
