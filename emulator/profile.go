package emulator

import "fmt"

// Profile selects a documented version of DPS behaviour (DPS-PROTOCOL.md
// Part A §1; ARCHITECTURE.md §4).
type Profile string

const (
	// ProfileDPS2019 is the 2019-10 "Communicate with your DPS using the MQTT
	// protocol" page: TLS 1.2 only, CleanSession=0 refused (CONNACK 0x02 and
	// close, Part A §2). The default.
	ProfileDPS2019 Profile = "dps-2019"
	// ProfileDPS2023 is the current pages: CleanSession is ignored and every
	// session is non-persistent (CONNACK session-present 0). TLS stays 1.2
	// only: D-TLS "Currently, DPS only supports TLS 1.2".
	ProfileDPS2023 Profile = "dps-2023"
)

// Profiles lists the known profiles, the default first.
func Profiles() []Profile { return []Profile{ProfileDPS2019, ProfileDPS2023} }

// ParseProfile returns the profile named s; "" is the default, dps-2019.
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case "":
		return ProfileDPS2019, nil
	case ProfileDPS2019, ProfileDPS2023:
		return Profile(s), nil
	}
	return "", fmt.Errorf("emulator: unknown profile %q (known: %s, %s)", s, ProfileDPS2019, ProfileDPS2023)
}

// refusesCleanSession0 reports whether CONNECT with CleanSession=0 is refused.
func (p Profile) refusesCleanSession0() bool { return p == ProfileDPS2019 }
