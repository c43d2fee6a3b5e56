package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/dps-conform/dps-conform/tracer"
)

// committed is the directory the generator's output is committed to.
const committed = "../../../testdata/pcaps"

// TestCommittedCapturesAreReproducible regenerates every capture and
// compares it with the committed one: byte for byte when the scenario is
// deterministic; otherwise (TLS randomness) the truth file must be equal
// and the plaintext flows of both captures must decode, with
// tracer.DecodeFile, to the same MQTT packets byte for byte.
func TestCommittedCapturesAreReproducible(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir, ""); err != nil {
		t.Fatal(err)
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			files := []string{s.name + ".truth.json"}
			if !s.tls {
				files = append(files, s.name+".pcapng")
			}
			for _, f := range files {
				got, err1 := os.ReadFile(filepath.Join(dir, f))
				want, err2 := os.ReadFile(filepath.Join(committed, f))
				if err1 != nil || err2 != nil {
					t.Fatalf("%v %v", err1, err2)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the committed file: run go run ./internal/gen/pcaps -out testdata/pcaps", f)
				}
			}
			if !s.tls {
				return
			}
			if _, err := os.Stat(filepath.Join(committed, s.name+".keylog")); err != nil {
				t.Errorf("committed key log: %v", err)
			}
			fresh := plainPackets(t, filepath.Join(dir, s.name+".pcapng"))
			old := plainPackets(t, filepath.Join(committed, s.name+".pcapng"))
			if len(fresh) == 0 || len(fresh) != len(old) {
				t.Fatalf("plaintext packets: fresh %d, committed %d", len(fresh), len(old))
			}
			for i := range fresh {
				if !bytes.Equal(fresh[i], old[i]) {
					t.Errorf("plaintext packet %d differs:\n fresh % x\n  want % x", i+1, fresh[i], old[i])
				}
			}
		})
	}
}

// plainPackets are the encodings of the MQTT packets of the capture's
// conversations on port 1883, in order.
func plainPackets(t *testing.T, path string) [][]byte {
	t.Helper()
	c, err := tracer.DecodeFile(path, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, conv := range c.Conversations {
		if conv.Server.Port() != 1883 {
			continue
		}
		for _, p := range conv.Packets {
			out = append(out, append([]byte(nil), p.Raw...))
		}
	}
	return out
}

// TestGenerateUnknown checks the -only error.
func TestGenerateUnknown(t *testing.T) {
	if err := generate(t.TempDir(), "nope"); err == nil {
		t.Error("generate -only nope succeeded")
	}
}
