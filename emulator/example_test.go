package emulator_test

import (
	"fmt"

	"github.com/dps-conform/dps-conform/emulator"
)

// ExampleParseFault turns a --fault argument into a fault switch and shows
// what it breaks.
func ExampleParseFault() {
	f, err := emulator.ParseFault("omit-retry-after")
	if err != nil {
		panic(err)
	}
	for _, info := range emulator.Faults() {
		if info.Name == f {
			fmt.Printf("%s breaks %s: %s\n", info.Name, info.Breaks, info.Description)
		}
	}
	_, err = emulator.ParseFault("omit-rid")
	fmt.Println(err != nil)
	// Output:
	// omit-retry-after breaks Part A §5, §6, §8: leave retry-after out of 202 and 429 answers (a 503 keeps its own)
	// true
}

// ExampleParseProfile: the empty profile is the default, dps-2019.
func ExampleParseProfile() {
	p, _ := emulator.ParseProfile("")
	fmt.Println(p, emulator.Profiles())
	// Output: dps-2019 [dps-2019 dps-2023]
}

// ExampleDefaultLimits shows the documented DPS limits the emulator
// enforces by default.
func ExampleDefaultLimits() {
	l := emulator.DefaultLimits()
	fmt.Println(l.MaxPacketSize, l.PollsPerWindow, l.PollWindow, l.RegistrationsPerMinute)
	// Output: 98304 5 10s 1000
}
