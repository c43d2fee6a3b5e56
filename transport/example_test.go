package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
// subprotocols the Azure IoT SDKs use, behind TLS 1.2, and dials it as a
// device would.
func ExampleNewWSHandler() {
	now := time.Now()
	ca, _ := transport.NewCA("example CA", transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	cert, _ := ca.IssueServer([]string{"127.0.0.1"}, transport.ECDSAP256, now.Add(-time.Hour), 24*time.Hour)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", transport.TLS12Only(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: transport.NewWSHandler(transport.WSOptions{}, func(c net.Conn) {
			_, _ = io.Copy(c, c) // c carries the MQTT byte stream: here an echo
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// The device side: wss://, the default path /$iothub/websocket.
	t, _ := transport.ParseTarget("wss://" + ln.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, t, transport.DialOptions{TLSConfig: &tls.Config{RootCAs: roots}})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0xC0, 0x00}) // PINGREQ
	echo := make([]byte, 2)
	_, _ = io.ReadFull(c, echo)
	fmt.Printf("%s: % x\n", t.Path, echo)
	// Output: /$iothub/websocket: c0 00
}

// ExampleDial shows how a caller tells an unreachable peer from a TLS
// refusal or a refused WebSocket upgrade.
func ExampleDial() {
	// A port nobody listens on: bind one, then close it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	t, err := transport.ParseTarget("mqtts://" + addr)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, t, transport.DialOptions{})
	var de *transport.DialError
	if errors.As(err, &de) {
		fmt.Println("failed at stage", de.Stage)
		return
	}
	if err != nil {
		panic(err)
	}
	defer c.Close() // write CONNECT to c, read CONNACK …

	// Output: failed at stage tcp
}
