package registry

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the logger's concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoSecrets drives every logging path (assignment, webhook
// failures, admin errors) at debug level and checks that no key, token
// signature or function key reaches the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf lockedBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	g := symGroup("g", keyG1, keyG2)
	g.AllocationPolicy = AllocationCustom
	g.CustomAllocationDefinition = &CustomAllocationDefinition{WebhookURL: deadURL + "/api?code=FUNCTIONKEYSECRET"}
	cfg := sasConfig()
	cfg.EnrollmentGroups = []EnrollmentGroup{g}
	r := openTest(t, cfg, func(o *Options) { o.Logger = logger })

	pw := sas(t, scope, "dev1", keyA, testNow.Add(time.Hour))
	register(t, r, "dev1", keyA, nil)
	register(t, r, "thermo-1", derive(t, keyG1, "thermo-1"), nil)
	_, _ = r.Attest(context.Background(), Credentials{RegistrationID: "dev1", Password: sas(t, scope, "dev1", keyG2, testNow.Add(time.Hour))}, AttestOptions{})
	doAdmin(t, r.AdminHandler(), "PUT", "/enrollments/x", `{"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"`+keyB+`!"}}}`, nil)

	log := buf.String()
	if !strings.Contains(log, "registry: assigned") || !strings.Contains(log, "custom allocation webhook") {
		t.Fatalf("expected log lines missing:\n%s", log)
	}
	sig := string(pw[strings.Index(string(pw), "sig=")+4:])
	sig = sig[:strings.IndexByte(sig, '&')]
	for _, secret := range []string{keyA, keyB, keyG1, keyG2, derive(t, keyG1, "thermo-1"), sig, "FUNCTIONKEYSECRET"} {
		if strings.Contains(log, secret) {
			t.Errorf("log holds a secret %q:\n%s", secret[:6]+"…", log)
		}
	}
}
