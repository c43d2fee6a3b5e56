package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// flagSet is a subcommand's own flag set plus the usage text printed above
// its flags.
type flagSet struct {
	*flag.FlagSet
	usage string
}

// newFlagSet returns a subcommand's own flag set. Never flag.CommandLine:
// Ginkgo registers its -ginkgo.* flags there.
func newFlagSet(name, usage string) *flagSet {
	fs := flag.NewFlagSet(progName+" "+name, flag.ContinueOnError)
	// On a parse error the flag package prints the error and the whole usage;
	// parseFlags prints one line itself instead, so the set stays silent.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, usage: usage}
}

// parseFlags parses args into fs. done is true when -h/--help was given: the
// usage has then been printed to stdout and the command must return nil. A
// parse error comes back as a *UsageError naming the flag, in --flag spelling.
func parseFlags(env *Env, fs *flagSet, args []string) (done bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(env.Stdout, fs)
		return true, nil
	}
	if err != nil {
		return false, &UsageError{Err: errors.New(doubleDash(err.Error()))}
	}
	return false, nil
}

// flagNameInMsg finds the "-name" spellings in the flag package's messages
// ("invalid value … for flag -x", "flag needs an argument: -x", "flag provided
// but not defined: -x", "invalid boolean value … for -x").
var flagNameInMsg = regexp.MustCompile(`(flag|for|argument:|defined:) -{1,2}([A-Za-z][\w.-]*)`)

// doubleDash rewrites the flag package's "-name" to the "--name" spelling the
// help text and docs use.
func doubleDash(msg string) string {
	return flagNameInMsg.ReplaceAllString(msg, "$1 --$2")
}

// printUsage writes the usage header of fs and its flags, in --flag spelling.
func printUsage(w io.Writer, fs *flagSet) {
	var b strings.Builder
	b.WriteString(fs.usage)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			b.WriteString("\nFlags:\n")
			first = false
		}
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(&b, " %s", typ)
		}
		b.WriteString("\n        ")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n        "))
		switch f.DefValue {
		case "", "false", "0":
		default:
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	io.WriteString(w, b.String())
}

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
