package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

const sasUsage = `Usage:
  dps-conform sas --id-scope SCOPE --registration-id ID --key KEY [token flags]
  dps-conform sas --id-scope SCOPE --registration-id ID --group-key KEY [token flags]
  dps-conform sas --registration-id ID --group-key KEY

Prints a DPS SAS token (the MQTT password) for one registration, signed with
the device's symmetric key (--key) or with the key derived from an enrollment
group key (--group-key). Without --id-scope, prints the derived device key
instead of a token. The registration id is used as given, not validated, so
tokens for invalid ids can be made on purpose. Keys never appear in errors.

Token flags: --expiry or --ttl, --sr-encoding, --key-name or --no-key-name.
`

// sasFlags are the values of the sas flags.
type sasFlags struct {
	idScope, registrationID string
	key, groupKey           string
	expiry                  unixSecondsFlag
	ttl                     time.Duration
	encoding                srEncodingFlag
	keyName                 string
	noKeyName               bool
}

func sasCmd(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet("sas", sasUsage)
	f := sasFlags{ttl: time.Hour, encoding: srEncodingFlag(dps.SRLower)}
	fs.StringVar(&f.idScope, "id-scope", "", "ID `SCOPE` of the DPS instance, e.g. 0ne00000000")
	fs.StringVar(&f.registrationID, "registration-id", "", "registration `ID` (required)")
	fs.StringVar(&f.key, "key", "", "base64 symmetric `KEY` of the device")
	fs.StringVar(&f.groupKey, "group-key", "", "base64 symmetric `KEY` of the enrollment group; the device key is derived from it")
	fs.Var(&f.expiry, "expiry", "token expiry as `UNIX` seconds (instead of --ttl)")
	fs.Var(durationFlag{p: &f.ttl}, "ttl", "token lifetime from now, a Go `DURATION` such as 30m or 24h")
	fs.Var(&f.encoding, "sr-encoding", "how sr is written, `MODE` lower (%2f, documented), upper (%2F) or raw (unencoded)")
	fs.StringVar(&f.keyName, "key-name", dps.DefaultKeyName, "key `NAME` written as skn in the token")
	fs.BoolVar(&f.noKeyName, "no-key-name", false, "leave skn out of the token")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (sas takes only flags)", fs.Arg(0))
	}
	out, err := f.build(flagsSet(fs), env.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, out)
	return nil
}

// tokenOnlyFlags make sense only when a token is printed (--id-scope given).
var tokenOnlyFlags = []string{"expiry", "ttl", "sr-encoding", "key-name", "no-key-name"}

// build checks the flag combination and returns the token or the derived key.
// set holds the names of the flags given on the command line.
func (f *sasFlags) build(set map[string]bool, now time.Time) (string, error) {
	for _, pair := range [][2]string{{"key", "group-key"}, {"expiry", "ttl"}, {"key-name", "no-key-name"}} {
		if set[pair[0]] && set[pair[1]] {
			return "", usageErrorf("--%s and --%s are mutually exclusive", pair[0], pair[1])
		}
	}
	for _, name := range []string{"id-scope", "registration-id", "key", "group-key", "key-name"} {
		if set[name] && f.value(name) == "" {
			return "", usageErrorf("--%s is empty", name)
		}
	}
	if f.registrationID == "" {
		return "", usageErrorf("--registration-id is required")
	}
	if f.key == "" && f.groupKey == "" {
		return "", usageErrorf("one of --key or --group-key is required")
	}
	if f.key != "" && f.idScope == "" {
		return "", usageErrorf("--id-scope is required with --key")
	}
	if f.idScope == "" {
		for _, name := range tokenOnlyFlags {
			if set[name] {
				return "", usageErrorf("--%s applies to a token, which needs --id-scope; without it sas prints the derived device key", name)
			}
		}
	}
	key := f.key
	if f.groupKey != "" {
		derived, err := dps.DeriveDeviceKey(f.groupKey, f.registrationID)
		if err != nil {
			return "", keyError("group-key", err)
		}
		if f.idScope == "" {
			return derived, nil
		}
		key = derived
	}
	expiry := now.Add(f.ttl)
	if set["expiry"] {
		expiry = time.Unix(int64(f.expiry), 0)
	}
	token, err := dps.BuildSASToken(dps.SASOptions{
		IDScope:        f.idScope,
		RegistrationID: f.registrationID,
		Key:            key,
		Expiry:         expiry,
		Encoding:       dps.SREncoding(f.encoding),
		KeyName:        f.keyName,
		OmitKeyName:    f.noKeyName,
	})
	if err != nil {
		// Only --key can be bad here: a derived key is always valid base64.
		return "", keyError("key", err)
	}
	return token, nil
}

// keyError turns an error of the dps package into a usage error. A key that
// is not base64 is reported against its flag, with the offset dps found and
// never the key itself; every other input was given by the user too, so any
// rejection is an input error.
func keyError(flagName string, err error) error {
	var e *dps.Error
	if errors.Is(err, dps.ErrInvalidKey) && errors.As(err, &e) {
		if e.Offset >= 0 {
			return usageErrorf("--%s is not standard base64 (bad data at byte %d)", flagName, e.Offset)
		}
		return usageErrorf("--%s is not standard base64", flagName)
	}
	return &UsageError{Err: err}
}

func (f *sasFlags) value(name string) string {
	switch name {
	case "id-scope":
		return f.idScope
	case "registration-id":
		return f.registrationID
	case "key":
		return f.key
	case "group-key":
		return f.groupKey
	case "key-name":
		return f.keyName
	}
	return ""
}

// unixSecondsFlag is a non-negative number of seconds since 1970-01-01 UTC,
// at most dps.MaxExpiryUnix.
type unixSecondsFlag int64

func (u *unixSecondsFlag) String() string { return strconv.FormatInt(int64(*u), 10) }

func (u *unixSecondsFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want Unix seconds, a non-negative integer such as 1578941692")
	}
	if n > dps.MaxExpiryUnix {
		return fmt.Errorf("want Unix seconds, a non-negative integer such as 1578941692, at most %d (9999-12-31T23:59:59Z)", int64(dps.MaxExpiryUnix))
	}
	*u = unixSecondsFlag(n)
	return nil
}

// srEncodingFlag is a dps.SREncoding spelled lower, upper or raw.
type srEncodingFlag dps.SREncoding

func (e *srEncodingFlag) String() string { return dps.SREncoding(*e).String() }

func (e *srEncodingFlag) Set(s string) error {
	for _, enc := range []dps.SREncoding{dps.SRLower, dps.SRUpper, dps.SRRaw} {
		if strings.EqualFold(s, enc.String()) {
			*e = srEncodingFlag(enc)
			return nil
		}
	}
	return fmt.Errorf("want lower, upper or raw")
}
