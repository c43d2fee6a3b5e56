// Package cli is the dps-conform command line: subcommands, their flags, and the
// mapping from errors to exit codes. It is a library so that tests drive it with
// buffers ([Main]) or as a real process under testscript ([Run]); only [Run]
// touches the process (os.Args, stdio, signals), and nothing here calls os.Exit.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// Exit codes of dps-conform (ARCHITECTURE.md §3).
const (
	// ExitConformant means success: the target met every MUST requirement, or a
	// utility command (help, version, sas) did its job.
	ExitConformant = 0
	// ExitNonConformant means the target was judged and broke at least one
	// MUST-level requirement.
	ExitNonConformant = 1
	// ExitUsage means the command line or an input was wrong: unknown command or
	// flag, bad flag value, missing or contradictory flags.
	ExitUsage = 2
	// ExitTargetUnreachable means no verdict could be produced: the target could
	// not be reached, or the environment failed (missing tool, unwritable output,
	// interruption, a feature that is not built yet).
	ExitTargetUnreachable = 3
)

const progName = "dps-conform"

// Env is what a subcommand may touch of the outside world. Tests build their own;
// there is no package-level state.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	// Stdin is the operator's input (device without --exec waits for
	// Enter); nil means there is none.
	Stdin io.Reader
	// Now returns the current time (the base of relative expiries such as
	// sas --ttl). Tests inject a fixed clock.
	Now func() time.Time
}

// A subcommand parses its own flags from args (which exclude the command name)
// and returns nil on success, or an error whose type chooses the exit code (see
// [ExitCode]).
type subcommand func(ctx context.Context, env *Env, args []string) error

// Run binds [Main] to the process: os.Args, os.Stdout, os.Stderr, and SIGINT or
// SIGTERM cancelling the context. It returns the exit code for os.Exit.
func Run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Now: time.Now}
	return env.main(ctx, os.Args[1:])
}

// Main runs the dps-conform command line given by args (without the program
// name), writing results to stdout and diagnostics to stderr, and returns the
// exit code. Errors are printed as one line: "dps-conform <command>: <message>".
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	env := &Env{Stdout: stdout, Stderr: stderr, Now: time.Now}
	return env.main(ctx, args)
}

// main dispatches args to a subcommand and turns its error into an exit code.
func (env *Env) main(ctx context.Context, args []string) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if len(args) == 0 {
		// A missing command is a usage error, as a missing subcommand
		// of bench or report is: the list goes to stderr, exit 2.
		// 'dps-conform help' prints it on stdout and exits 0.
		printCommandList(env.Stderr)
		return env.report(progName, usageErrorf("missing command; run 'dps-conform help' for the command list"))
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		return env.report(progName, unknownCommand(name))
	}
	return env.runCommand(ctx, progName+" "+name, cmd.run, rest)
}

// runCommand runs one subcommand, prints its error under prefix and returns
// the exit code.
func (env *Env) runCommand(ctx context.Context, prefix string, run subcommand, args []string) (code int) {
	defer func() {
		// A panic is a bug in dps-conform: say so in one line, keep the stack
		// for the bug report, and exit as "no verdict".
		if r := recover(); r != nil {
			fmt.Fprintf(env.Stderr, "%s: internal error (a bug in dps-conform, please report it): %v\n%s", prefix, oneLine(fmt.Sprint(r)), debug.Stack())
			code = ExitTargetUnreachable
		}
	}()
	// Output that could not be written is lost: say so, and never exit 0
	// (stdout on a full disk; a closed pipe ends the process by SIGPIPE).
	out := &checkedWriter{w: env.Stdout}
	cmdEnv := *env
	cmdEnv.Stdout = out
	err := run(ctx, &cmdEnv, args)
	if out.err != nil {
		werr := envErrorf("writing standard output: %v", out.err)
		if err == nil {
			return env.report(prefix, werr)
		}
		if ExitCode(err) == ExitNonConformant {
			env.report(prefix, werr) // the verdict stands; its table is lost
		}
	}
	return env.report(prefix, err)
}

// checkedWriter remembers the first error of its writer.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// report prints err (if any) as one line on stderr, prefixed, and returns its
// exit code.
func (env *Env) report(prefix string, err error) int {
	if err == nil {
		return ExitConformant
	}
	fmt.Fprintf(env.Stderr, "%s: %s\n", prefix, oneLine(err.Error()))
	return ExitCode(err)
}

// oneLine folds a multi-line message into one line, so every error is a single
// greppable line on stderr.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return strings.Join(fields, "; ")
}
