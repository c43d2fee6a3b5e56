package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
)

type command struct {
	name    string
	summary string
	run     subcommand
}

// commands are the subcommands that exist, in the order help lists them.
// (A function, not a package variable, because the help command refers back to
// the list.)
func commands() []command {
	return []command{
		{"help", "show this list, or a command's usage: dps-conform help COMMAND", helpCmd},
		{"version", "print the version of this binary", versionCmd},
		{"sas", "print a DPS SAS token, or derive a device key from a group key", sasCmd},
		{"run", "run the service conformance suite against a DPS endpoint", runCmd},
		{"list", "show the requirement catalogue and the specs and rules judging it", listCmd},
		{"provision", "provision with the reference device client, print the assignment", provisionCmd},
		{"emulator", "serve the reference DPS emulator", emulatorCmd},
		{"trace", "decode a pcap/pcapng capture, optionally check it", traceCmd},
		{"device", "judge a device under test: serve DPS scenarios, run or wait for the device, apply the device rules", deviceCmd},
		{"tlsprobe", "probe a server's TLS versions, suites, certificate chain and plaintext port", tlsprobeCmd},
		{"report", "verify a results bundle or directory, or re-render its reports", reportCmd},
		{"bench", "measure provisioning and trace decoding on this machine", benchCmd},
	}
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func unknownCommand(name string) error {
	if strings.HasPrefix(name, "-") {
		return usageErrorf("unknown flag %q (flags go after the command); run 'dps-conform help' for the command list", name)
	}
	return usageErrorf("unknown command %q; run 'dps-conform help' for the command list", name)
}

func printCommandList(w io.Writer) {
	var b strings.Builder
	b.WriteString(`dps-conform checks Azure IoT Device Provisioning Service (DPS) behaviour over MQTT 3.1.1.

Usage:
  dps-conform COMMAND [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Exit codes:
  0  conformant, or success
  1  non-conformant: at least one MUST-level finding
  2  usage or input error
  3  target unreachable or environment failure: no verdict

Run 'dps-conform COMMAND -h' for the flags of a command.
`)
	io.WriteString(w, b.String())
}

const helpUsage = `Usage:
  dps-conform help [COMMAND]

Without COMMAND, lists the commands; with it, prints that command's usage.
`

func helpCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("help", helpUsage)
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		printCommandList(env.Stdout)
		return nil
	case 2:
		// A command's own subcommand: help report verify, help bench trace.
		if cmd, ok := lookupCommand(fs.Arg(0)); ok && fs.Arg(0) != "help" && cmdHasSub(fs.Arg(0)) {
			return cmd.run(ctx, env, []string{fs.Arg(1), "-h"})
		}
		return usageErrorf("want one command name, got %d arguments", fs.NArg())
	case 1:
		name := fs.Arg(0)
		if name == "help" {
			printUsage(env.Stdout, fs)
			return nil
		}
		cmd, ok := lookupCommand(name)
		if !ok {
			return unknownCommand(name)
		}
		return cmd.run(ctx, env, []string{"-h"})
	default:
		return usageErrorf("want at most one command name (and a subcommand of bench or report), got %d arguments", fs.NArg())
	}
}

// cmdHasSub reports whether a command takes a subcommand name first.
func cmdHasSub(name string) bool { return name == "bench" || name == "report" }
