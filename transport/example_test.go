package transport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

func ExampleCA_IssueServer() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	root, _ := transport.NewCA("root", transport.ECDSAP256, now, 24*time.Hour)
	inter, _ := root.NewIntermediate("intermediate", transport.ECDSAP256, now, 24*time.Hour)
	cert, _ := inter.IssueServer([]string{"localhost", "127.0.0.1"}, transport.ECDSAP256, now, time.Hour)
	fmt.Println(len(cert.Certificate), cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	// Output: 2 localhost [localhost] [127.0.0.1]
}

// ExampleNewWSHandler serves MQTT over WebSocket on the paths and
// subprotocols the Azure IoT SDKs use, behind TLS 1.2.
func ExampleNewWSHandler() {
	cert, _ := tls.LoadX509KeyPair("server.pem", "server-key.pem")
	srv := &http.Server{
		Addr:              "127.0.0.1:8443",
		TLSConfig:         transport.TLS12Only(&tls.Config{Certificates: []tls.Certificate{cert}}),
		ReadHeaderTimeout: 10 * time.Second,
		Handler: transport.NewWSHandler(transport.WSOptions{}, func(c net.Conn) {
			_, _ = io.Copy(c, c) // c carries the MQTT byte stream
		}),
	}
	_ = srv.ListenAndServeTLS("", "")
}

func ExampleDial() {
	t, err := transport.ParseTarget("wss://global.azure-devices-provisioning.net/$iothub/websocket")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, t, transport.DialOptions{})
	if err != nil {
		fmt.Println(err) // a *transport.DialError naming the stage
		return
	}
	defer c.Close()
	// write CONNECT to c, read CONNACK …
}
