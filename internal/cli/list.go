package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/dps-conform/dps-conform/conformance"
)

const listUsage = `Usage:
  dps-conform list [--format text|json|yaml] [--role service|device]

Lists the requirement catalogue (conformance/behaviors/*.yaml) with the specs
and rules that judge each requirement.

  text  one line per requirement: id, level, role, specs, rule, statement
  json  {"requirements": [...], "inventory": {...}}
  yaml  the spec inventory, as checked in at conformance/testdata/conformance.yaml:
        go run ./cmd/dps-conform list --format yaml > conformance/testdata/conformance.yaml

`

func listCmd(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet("list", listUsage)
	format := fs.String("format", "text", "output `FORMAT`: text, json or yaml")
	role := fs.String("role", "", "only requirements of `ROLE` service or device (text and json)")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (list takes only flags)", fs.Arg(0))
	}
	switch *role {
	case "", "service", "device":
	default:
		return usageErrorf("--role %q: want service or device", *role)
	}
	if *role != "" && *format == "yaml" {
		// The yaml inventory is the whole suite's (the checked-in
		// conformance.yaml); a --role it ignored would look applied.
		return usageErrorf("--role applies to --format text and json; the yaml inventory is the whole suite's")
	}
	inv, cat, err := conformance.BuildInventory()
	if err != nil {
		return &EnvError{Err: err}
	}
	specs := map[string]int{}
	for _, s := range inv.Specs {
		specs[s.ID]++
	}
	rules := map[string]bool{}
	for _, r := range inv.Rules {
		rules[r] = true
	}
	var reqs []*conformance.Requirement
	selected := map[string]bool{}
	for _, r := range cat.Requirements {
		if *role == "" || string(r.Role) == *role {
			reqs = append(reqs, r)
			selected[r.ID] = true
		}
	}
	switch *format {
	case "yaml":
		return inv.WriteYAML(env.Stdout)
	case "json":
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Requirements []*conformance.Requirement `json:"requirements"`
			Inventory    *conformance.Inventory     `json:"inventory"`
		}{reqs, inv})
	case "text":
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLEVEL\tROLE\tSPECS\tRULE\tSTATEMENT")
		for _, r := range reqs {
			rule := "-"
			if rules[r.ID] {
				rule = "yes"
			}
			st := clip(r.Statement, 100)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Level, r.Role, specs[r.ID], rule, strings.ReplaceAll(st, "\n", " "))
		}
		tw.Flush()
		// The counts are of the requirements listed: with --role, the
		// specs and rules judging them and the ones of them not covered.
		nSpecs, nRules, nNotCovered := 0, 0, 0
		for _, s := range inv.Specs {
			if selected[s.ID] {
				nSpecs++
			}
		}
		for _, id := range inv.Rules {
			if selected[id] {
				nRules++
			}
		}
		for _, id := range inv.NotCovered {
			if selected[id] {
				nNotCovered++
			}
		}
		fmt.Fprintf(env.Stdout, "\n%d requirements, %d specs, %d rules; not covered by a spec or rule: %d (dps-conform list --format yaml shows which)\n",
			len(reqs), nSpecs, nRules, nNotCovered)
		return nil
	}
	return usageErrorf("--format %q: want text, json or yaml", *format)
}

// clip shortens s to at most n runes, ending it with "..." when cut; it
// cuts between runes, never inside a multi-byte one.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, kept := 0, 0
	for i = range s {
		if kept == n-3 {
			break
		}
		kept++
	}
	return s[:i] + "..."
}
