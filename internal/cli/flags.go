package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/transport"
)

// flagSet is a subcommand's own flag set plus the usage text printed above
// its flags.
type flagSet struct {
	*flag.FlagSet
	usage string
}

// newFlagSet returns a subcommand's own flag set. Never flag.CommandLine:
// Ginkgo registers its -ginkgo.* flags there.
func newFlagSet(name, usage string) *flagSet {
	fs := flag.NewFlagSet(progName+" "+name, flag.ContinueOnError)
	// On a parse error the flag package prints the error and the whole usage;
	// parseFlags prints one line itself instead, so the set stays silent.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, usage: usage}
}

// parseFlags parses args into fs. done is true when -h/--help was given: the
// usage has then been printed to stdout and the command must return nil. A
// parse error comes back as a *UsageError naming the flag, in --flag spelling.
//
// Flags may follow the positional arguments, as in the documented
// "dps-conform trace FILE --keylog KEYS": the arguments are reordered, flags
// first, before the flag package (which stops at the first non-flag) sees
// them. "--" still ends the flags.
func parseFlags(env *Env, fs *flagSet, args []string) (done bool, err error) {
	err = fs.Parse(flagsFirst(fs.FlagSet, args))
	if errors.Is(err, flag.ErrHelp) {
		printUsage(env.Stdout, fs)
		return true, nil
	}
	if err != nil {
		return false, &UsageError{Err: errors.New(numberWanted(fs.FlagSet, doubleDash(err.Error())))}
	}
	return false, nil
}

// flagParseError matches the flag package's error for a value its own
// number, duration and boolean flags refuse: "invalid value "1.5" for flag --n:
// parse error" ("value out of range", or "invalid boolean value … for
// --x: parse error").
var flagParseError = regexp.MustCompile(`^(invalid (?:boolean )?value (".*") for (?:flag )?--([\w.-]+)): (parse error|value out of range)$`)

// numberWanted replaces the flag package's "parse error" and "value out
// of range" with what the flag takes, as the flags of our own types say
// ("want a positive duration such as …").
func numberWanted(fs *flag.FlagSet, msg string) string {
	m := flagParseError.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	f := fs.Lookup(m[3])
	if f == nil {
		return msg
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return msg
	}
	var want string
	switch g.Get().(type) {
	case bool:
		want = "want true or false (or the flag alone for true)"
	case int, int64:
		want = "want a whole number such as 10"
	case uint, uint64:
		want = "want a whole number from 0, such as 10"
	case float64:
		want = "want a number such as 1.5"
	case time.Duration:
		// As durationFlag says it: out of range, or the unit a bare
		// number lacks.
		v, _ := strconv.Unquote(m[2])
		want = "want a duration such as 30s or 2m"
		if durationSyntax.MatchString(v) {
			want = durationOutOfRange(v)
		} else if _, err := strconv.ParseFloat(v, 64); err == nil {
			want += " (a number needs its unit: " + v + "s)"
		}
	default:
		return msg
	}
	if m[4] == "value out of range" {
		want = "out of range for a 64-bit number"
	}
	return m[1] + ": " + want
}

// flagsFirst returns args with every flag (and the value of a non-boolean
// flag given as a separate argument) moved before the positional arguments,
// which follow a "--" so that none of them is read as a flag.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
			if i+1 == len(args) {
				// The last argument, with no value: left last, so that
				// Parse says "flag needs an argument" instead of taking
				// the "--" below for its value.
				return flags
			}
			i++
			flags = append(flags, args[i])
		}
	}
	if len(pos) == 0 {
		return flags
	}
	return append(append(flags, "--"), pos...)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagNameInMsg finds the "-name" spellings in the flag package's messages
// ("invalid value … for flag -x", "flag needs an argument: -x", "flag provided
// but not defined: -x", "invalid boolean value … for -x").
var flagNameInMsg = regexp.MustCompile(`(flag|for|argument:|defined:) -{1,2}([A-Za-z][\w.-]*)`)

// doubleDash rewrites the flag package's "-name" to the "--name" spelling the
// help text and docs use.
func doubleDash(msg string) string {
	return flagNameInMsg.ReplaceAllString(msg, "$1 --$2")
}

// printUsage writes the usage header of fs and its flags, in --flag spelling.
func printUsage(w io.Writer, fs *flagSet) {
	var b strings.Builder
	b.WriteString(strings.TrimRight(fs.usage, "\n") + "\n")
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			b.WriteString("\nFlags:\n")
			first = false
		}
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(&b, " %s", typ)
		}
		b.WriteString("\n        ")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n        "))
		switch f.DefValue {
		case "", "false", "0":
		default:
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	io.WriteString(w, b.String())
}

// loadCAPool reads the PEM CA bundle path given with flagName (--ca) into a
// pool. A file that cannot be read or holds no PEM certificate is a
// *UsageError naming the flag: the bundle is an input the user gave.
func loadCAPool(flagName, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("%s: %w", flagName, err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usageErrorf("%s: no PEM certificate in %s", flagName, path)
	}
	return pool, nil
}

// loadKeyPair loads a client certificate and its key, naming in an error
// the file at fault as certName/keyName (flags or config fields) say.
func loadKeyPair(certName, certPath, keyName, keyPath string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, &UsageError{Err: fmt.Errorf("%s: %w", certName, err)}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, &UsageError{Err: fmt.Errorf("%s: %w", keyName, err)}
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return tls.Certificate{}, usageErrorf("%s: no PEM certificate in %s", certName, certPath)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		return tls.Certificate{}, usageErrorf("%s: no PEM private key in %s", keyName, keyPath)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, usageErrorf("%s %s and %s %s: %v", certName, certPath, keyName, keyPath, err)
	}
	return cert, nil
}

// certRegistrationID is the registration id an X.509 device presents: the
// subject CN of cert's leaf, checked as --registration-id would be, so that
// a CN that is no registration id is a usage error naming certName rather
// than a refusal that would read as the service's verdict.
func certRegistrationID(certName string, cert tls.Certificate) (string, error) {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", usageErrorf("%s: %v", certName, err)
		}
	}
	if err := dps.ValidateRegistrationID(leaf.Subject.CommonName); err != nil {
		return "", usageErrorf("%s: its subject CN %q, the registration id, is not one: %v", certName, leaf.Subject.CommonName, err)
	}
	return leaf.Subject.CommonName, nil
}

// checkBase64Key refuses a key flag value that is not standard base64 of
// at least one byte, naming the flag and the value's length, never the key.
func checkBase64Key(flagName, v string) error {
	if b, err := base64.StdEncoding.DecodeString(v); err != nil || len(b) == 0 {
		return usageErrorf("--%s is not a base64 key (%d characters; want standard base64 as the portal and az CLI print it)", flagName, len(v))
	}
	return nil
}

// parseKeyType reads a key type flag: ecdsa (P-256) or rsa (2048).
func parseKeyType(flagName, v string) (transport.KeyType, error) {
	switch v {
	case "ecdsa":
		return transport.ECDSAP256, nil
	case "rsa":
		return transport.RSA2048, nil
	}
	return 0, usageErrorf("--%s %q: want ecdsa or rsa", flagName, v)
}

// checkHostName refuses a host flag value that transport.ParseTarget would
// refuse as a host: it goes into an SNI or a certificate as given.
func checkHostName(flagName, s string) error {
	if err := transport.CheckHost(s); err != nil {
		return usageErrorf("--%s %q: want an IP address or a DNS name: %v", flagName, s, err)
	}
	return nil
}

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// durationFlag is a time.Duration flag (use fs.Var(durationFlag{p: &d}, …))
// that must be positive, or may also be 0 (zeroOK: none) or negative
// (negativeOK: a limit switched off, as the emulator's). A bound of 0s or
// -1s where neither means anything would end every wait at once, or fall
// back to a default unseen.
type durationFlag struct {
	p                  *time.Duration
	zeroOK, negativeOK bool
	// seconds: a value travelling as whole seconds (a retry-after), so
	// the error gives examples the flag accepts (never 500ms).
	seconds bool
}

func (d durationFlag) String() string {
	if d.p == nil {
		return "0s"
	}
	return d.p.String()
}

// durationSyntax is the form time.ParseDuration reads; a value of this
// form that it refuses is out of range.
var durationSyntax = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// durationOutOfRange says that s, of durationSyntax's form, is beyond
// what a time.Duration holds, on its side of zero.
func durationOutOfRange(s string) string {
	if strings.HasPrefix(s, "-") {
		return fmt.Sprintf("out of range: the most negative duration is %v (about 292 years)", time.Duration(math.MinInt64))
	}
	return fmt.Sprintf("out of range: the longest duration is %v (about 292 years)", time.Duration(math.MaxInt64))
}

func (d durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil && durationSyntax.MatchString(s) {
		// time.ParseDuration says "invalid duration" for a value too
		// large for an int64 of nanoseconds, as for a typo.
		return errors.New(durationOutOfRange(s))
	}
	switch {
	case err != nil, v == 0 && !d.zeroOK, v < 0 && !d.negativeOK:
		hint := ""
		if _, ferr := strconv.ParseFloat(s, 64); err != nil && ferr == nil {
			hint = " (a number needs its unit: " + s + "s)"
		}
		switch {
		case d.seconds:
			return errors.New("want 0 or a whole number of seconds such as 1s, 3s or 30s" + hint)
		case d.zeroOK:
			return errors.New("want 0 or a positive duration such as 500ms, 30s or 24h" + hint)
		case d.negativeOK:
			return errors.New("want a positive duration such as 500ms, 30s or 24h, or a negative one (-1s) to switch the limit off" + hint)
		}
		return errors.New("want a positive duration such as 500ms, 30s or 24h" + hint)
	}
	*d.p = v
	return nil
}
