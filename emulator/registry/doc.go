// Package registry is the enrollment and registration state of the reference
// DPS emulator (docs/ARCHITECTURE.md §4 "Emulator model").
//
// It holds individual enrollments and enrollment groups in the DPS service
// REST schema (the JSON the service API and the az CLI print), loaded from a
// YAML or JSON config file (ParseConfig, LoadConfig) and managed through an
// admin HTTP API that follows the service API's paths (AdminHandler). It
// judges a device's proof of possession (Attest: SAS tokens signed with an
// individual or group-derived key, X.509 client certificates by thumbprint or
// by chain to a group's signing certificate), allocates an IoT hub among the
// linked hubs (hashed, static, geoLatency, custom webhook), applies the
// reprovision policy and records the registration (Assign).
//
// State lives in a bbolt database under Options.StateDir. A registration
// answered "assigned" is committed with fsync before Assign returns, so it
// survives a crash or kill -9 of the emulator. Without a state directory
// nothing outlives the process: the enrollments live in a temporary database
// removed on Close, and the registrations in memory.
//
// See docs/enrollments.md for the config file format and the admin API.
package registry
