package tlstrace_test

import (
	"fmt"
	"strings"

	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

func ExampleParseKeyLog() {
	log := "# SSLKEYLOGFILE\nCLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("01", 48) + "\n"
	kl, err := tlstrace.ParseKeyLog(strings.NewReader(log))
	fmt.Println(kl.Len(), err)
	_, err = tlstrace.ParseKeyLog(strings.NewReader("CLIENT_RANDOM abcd 00"))
	fmt.Println(err)
	// Output:
	// 1 <nil>
	// tlstrace: key log line 1: CLIENT_RANDOM: client random has 4 hex digits, want 64
}

func ExampleStream_Facts() {
	// A server refusing the client's version: a clear fatal alert.
	s := tlstrace.NewStream(nil)
	_, _ = s.Feed(tlstrace.ServerToClient, []byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46})
	fmt.Println(s.Facts().Alerts[0])
	fmt.Println(tlstrace.VersionName(0x0304), tlstrace.SuiteName(0x1301))
	fmt.Println(tlstrace.LooksLikeTLS([]byte{0x16, 0x03, 0x01, 0x02, 0x00}))
	// Output:
	// fatal protocol_version
	// TLS 1.3 TLS_AES_128_GCM_SHA256
	// true
}
