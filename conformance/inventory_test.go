package conformance_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/dps-conform/dps-conform/conformance"
)

// TestInventoryUpToDate regenerates the spec inventory in memory and
// compares it with the checked-in conformance/testdata/conformance.yaml
// (the k8s verify-conformance-yaml idea): a spec added, renamed or
// re-labelled without regenerating the file fails here.
func TestInventoryUpToDate(t *testing.T) {
	inv, _, err := conformance.BuildInventory()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := inv.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	const path = "testdata/conformance.yaml"
	if os.Getenv("DPSCONFORM_UPDATE") != "" {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go run ./cmd/dps-conform list --format yaml > conformance/%s)", err, path)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("conformance/%s is stale; regenerate it: go run ./cmd/dps-conform list --format yaml > conformance/%s", path, path)
	}
}
