package tlstrace

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Key log labels of the NSS key log format.
const (
	labelClientRandom  = "CLIENT_RANDOM"
	labelCHTS          = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
	labelSHTS          = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
	labelCTS0          = "CLIENT_TRAFFIC_SECRET_0"
	labelSTS0          = "SERVER_TRAFFIC_SECRET_0"
	maxKeyLogLine      = 64 << 10
	clientRandomLength = 32
)

// secrets are the key log entries of one connection.
type secrets struct {
	master     []byte // TLS 1.2 master secret (48 bytes)
	chts, shts []byte // TLS 1.3 handshake traffic secrets
	cts0, sts0 []byte // TLS 1.3 application traffic secrets 0
}

// KeyLog holds secrets from an NSS key log file (SSLKEYLOGFILE), keyed by
// client random: CLIENT_RANDOM (TLS 1.2 master secret),
// CLIENT_/SERVER_HANDSHAKE_TRAFFIC_SECRET and CLIENT_/SERVER_TRAFFIC_SECRET_0
// (TLS 1.3). Other labels are ignored.
type KeyLog struct {
	m map[[clientRandomLength]byte]*secrets
	// unused counts the lines ParseKeyLog skipped that were neither blank
	// nor comments; firstUnused is the first of them, cut to 32 bytes.
	unused      int
	firstUnused string
}

// ParseKeyLog reads an NSS key log. Comments (#) and blank lines are
// skipped, unknown labels ignored; a malformed line is an error naming its
// line number and what is wrong.
func ParseKeyLog(r io.Reader) (*KeyLog, error) {
	k := &KeyLog{m: make(map[[clientRandomLength]byte]*secrets)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxKeyLogLine)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		var dst func(*secrets) *[]byte
		wantLen := 0
		switch f[0] {
		case labelClientRandom:
			dst, wantLen = func(x *secrets) *[]byte { return &x.master }, 48
		case labelCHTS:
			dst = func(x *secrets) *[]byte { return &x.chts }
		case labelSHTS:
			dst = func(x *secrets) *[]byte { return &x.shts }
		case labelCTS0:
			dst = func(x *secrets) *[]byte { return &x.cts0 }
		case labelSTS0:
			dst = func(x *secrets) *[]byte { return &x.sts0 }
		default:
			if k.unused++; k.unused == 1 {
				k.firstUnused = s[:min(len(s), 32)]
			}
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: want 3 fields (label, client random, secret), got %d", line, f[0], len(f))
		}
		cr, err := hex.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: client random is not hex: %w", line, f[0], err)
		}
		if len(cr) != clientRandomLength {
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: client random has %d hex digits, want 64", line, f[0], len(f[1]))
		}
		sec, err := hex.DecodeString(f[2])
		if err != nil {
			// The secret itself is never echoed.
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: secret is not hex (%d characters)", line, f[0], len(f[2]))
		}
		if wantLen != 0 && len(sec) != wantLen {
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: master secret has %d hex digits, want %d", line, f[0], len(f[2]), 2*wantLen)
		}
		if wantLen == 0 && len(sec) != 32 && len(sec) != 48 {
			return nil, fmt.Errorf("tlstrace: key log line %d: %s: traffic secret has %d hex digits, want 64 or 96", line, f[0], len(f[2]))
		}
		var key [clientRandomLength]byte
		copy(key[:], cr)
		e := k.m[key]
		if e == nil {
			e = &secrets{}
			k.m[key] = e
		}
		*dst(e) = sec
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tlstrace: key log line %d: %w", line+1, err)
	}
	return k, nil
}

// Len returns the number of client randoms with at least one secret.
func (k *KeyLog) Len() int {
	if k == nil {
		return 0
	}
	return len(k.m)
}

// Unused returns how many lines ParseKeyLog skipped that were neither
// blank nor comments (other labels, or no key log line at all), and the
// first of them cut to 32 bytes: no secret, since a key log line starts
// with its label and a 64-digit client random. A key log with Unused
// lines and Len 0 is likely not a key log.
func (k *KeyLog) Unused() (lines int, first string) {
	if k == nil {
		return 0, ""
	}
	return k.unused, k.firstUnused
}

// Merge adds the entries of o to k; entries of o win on conflict.
func (k *KeyLog) Merge(o *KeyLog) {
	if k == nil || o == nil {
		return
	}
	if k.m == nil {
		k.m = make(map[[clientRandomLength]byte]*secrets)
	}
	for cr, s := range o.m {
		e := k.m[cr]
		if e == nil {
			e = &secrets{}
			k.m[cr] = e
		}
		for _, p := range [][2]*[]byte{{&e.master, &s.master}, {&e.chts, &s.chts}, {&e.shts, &s.shts}, {&e.cts0, &s.cts0}, {&e.sts0, &s.sts0}} {
			if *p[1] != nil {
				*p[0] = *p[1]
			}
		}
	}
}

// secret0 is the TLS 1.3 traffic secret 0 of direction d, or nil.
func (s *secrets) secret0(d Dir) []byte {
	if d == ClientToServer {
		return s.cts0
	}
	return s.sts0
}

func (k *KeyLog) lookup(cr []byte) *secrets {
	if k == nil || len(cr) != clientRandomLength {
		return nil
	}
	var key [clientRandomLength]byte
	copy(key[:], cr)
	return k.m[key]
}
