// Package tracer records and decodes packet captures of DPS traffic.
//
// The reader side (Decode, DecodeFile) reads pcap and pcapng files — link
// types Ethernet (with VLAN tags), Linux SLL and SLL2, raw IP and BSD
// loopback (NULL and LOOP), over IPv4 and IPv6 — reassembles every TCP
// connection and decodes the MQTT it carries:
//
//   - TCP reassembly delivers each byte once, in sequence order, across
//     retransmissions, out-of-order segments and overlaps. A hole that is
//     acknowledged by the peer, that outgrows Options.MaxStreamBuffer or
//     that is still open when the capture ends is reported as a Gap, and
//     decoding resynchronises on the next plausible MQTT fixed header.
//     Captures that start mid-connection are decoded the same way.
//   - Layers above TCP are sniffed from the first client bytes: a TLS
//     ClientHello is decrypted with tlstrace (an NSS key log from
//     Options.KeyLog or from pcapng Decryption Secrets Blocks), a WebSocket
//     upgrade is unframed with wstrace, and the MQTT byte stream is decoded
//     with packets in lenient mode, so that rule violations are reported on
//     the Packet and malformed packets become Problems instead of errors.
//   - A connection whose CONNECT says protocol level 5 is decoded with
//     paho.golang's MQTT 5 packets and flagged by Conversation.MQTTVersion
//     (DPS supports MQTT 3.1.1 only).
//
// The result is a Capture: Conversations with their endpoints, TLS and
// WebSocket facts, timed MQTT packets of both directions with frame
// numbers and stream offsets, gaps and problems. WriteText and WriteJSON
// render it as the transcripts of "dps-conform trace".
//
// The writer side (Recorder) writes synthetic and live traffic as pcapng.
package tracer
