// Package interop holds no code: its tests prove dps-conform against real
// peers it did not write — the official Azure IoT Node.js provisioning SDK,
// the Eclipse Paho Go MQTT client, the mosquitto_pub/mosquitto_sub command
// line clients, and the mosquitto broker (a real MQTT server that is not DPS
// and must make the device client fail). See docs/interop.md.
package interop
