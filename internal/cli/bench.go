package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

const benchUsage = `Usage:
  dps-conform bench provision [flags]
  dps-conform bench trace [flags]

Measures dps-conform on this machine and prints the figures as a text table
(or JSON with --format json), next to a ceiling measured in the same run:

  provision  a provisioning storm against the reference emulator on loopback,
             next to the raw TLS 1.2 full-handshake rate of the same machine,
             plus the memory held per idle connection
  trace      decoding a large generated capture with the tracer, next to
             tshark and cat on the same file

Every run is bounded by its flags and ends on its own. See docs/benchmarks.md.
Run 'dps-conform bench provision -h' or 'dps-conform bench trace -h' for flags.
`

func benchCmd(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return usageErrorf("bench needs a subcommand: provision or trace")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		io.WriteString(env.Stdout, benchUsage)
		return nil
	case "provision":
		return benchProvisionCmd(ctx, env, args[1:])
	case "trace":
		return benchTraceCmd(ctx, env, args[1:])
	case "tls-server":
		return benchTLSServerCmd(ctx, env, args[1:])
	default:
		return usageErrorf("unknown bench subcommand %q: want provision or trace", args[0])
	}
}

// benchFormat is the output format of the bench commands.
type benchFormat string

const (
	benchText benchFormat = "text"
	benchJSON benchFormat = "json"
)

func parseBenchFormat(s string) (benchFormat, error) {
	switch benchFormat(s) {
	case benchText, benchJSON:
		return benchFormat(s), nil
	}
	return "", usageErrorf("--format %q: want text or json", s)
}

// benchRow is one line of a text table: a figure, its value and a remark.
type benchRow struct{ name, value, note string }

// writeBenchOutput prints v as indented JSON, or rows as an aligned table
// under title.
func writeBenchOutput(w io.Writer, format benchFormat, v any, title string, rows []benchRow) error {
	var b bytes.Buffer
	if format == benchJSON {
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encoding the results: %w", err)
		}
	} else {
		fmt.Fprintf(&b, "%s\n", title)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, r := range rows {
			if r.name == "" {
				fmt.Fprintln(tw, "\t\t")
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.value, r.note)
		}
		tw.Flush()
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return envErrorf("writing the results: %v", err)
	}
	return nil
}

// parseIntList parses a comma-separated list of positive integers for flag.
func parseIntList(flag, s string, max int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > max {
			return nil, usageErrorf("--%s %q: want a comma-separated list of integers 1..%d", flag, s, max)
		}
		out = append(out, n)
	}
	return out, nil
}

// procStatusKiB reads a "Field:   N kB" line of /proc/PID/status (pid 0:
// self), e.g. VmRSS or VmHWM. ok is false where /proc is not available.
func procStatusKiB(pid int, field string) (kib int64, ok bool) {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		rest, found := strings.CutPrefix(line, field+":")
		if !found {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// fmtRate formats a per-second rate.
func fmtRate(v float64, unit string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// fmtRatio formats a ratio such as 0.83 or 31.2×.
func fmtRatio(v float64) string {
	switch {
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	case v >= 0.1:
		return fmt.Sprintf("%.2f×", v)
	default:
		return fmt.Sprintf("%.4f×", v)
	}
}
