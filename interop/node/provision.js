// provision.js registers one device with the official Azure IoT Node.js
// provisioning device SDK and prints the outcome as one JSON line on stdout.
// The Go tests in interop/ run it against the dps-conform emulator; see
// docs/interop.md.
//
// Environment:
//   DPS_TRANSPORT        mqtt (MQTT over TLS) or mqttws (MQTT over WebSocket over TLS)
//   DPS_HOST, DPS_PORT   host and port of the MQTT over TLS listener (mqtt)
//   DPS_WS_URL           wss://host:port/$iothub/websocket (mqttws)
//   DPS_ID_SCOPE         id scope
//   DPS_REGISTRATION_ID  registration id
//   one attestation:
//     DPS_SYMMETRIC_KEY  individual enrollment key (base64)
//     DPS_GROUP_KEY      enrollment group key (base64); the device key is derived
//     DPS_CERT_FILE, DPS_KEY_FILE  PEM files of the device certificate and its private key
//   DPS_TIMEOUT_MS       give up after this many milliseconds (default 30000)
// The server certificate is trusted through NODE_EXTRA_CA_CERTS.
//
// Exit status: 0 and {"status":...,"assignedHub":...,"deviceId":...} when the
// SDK reports a registration state; 1 and {"error":...} on any SDK error;
// 2 on bad environment; 3 on timeout.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');

function fail(code, message) {
  process.stdout.write(JSON.stringify({ error: message }) + '\n');
  process.exit(code);
}

function need(name) {
  const v = process.env[name];
  if (!v) {
    fail(2, 'environment variable ' + name + ' is not set');
  }
  return v;
}

// deriveDeviceKey is the documented derivation of a device key from an
// enrollment group key: base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
function deriveDeviceKey(groupKey, registrationId) {
  return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64'))
    .update(registrationId, 'utf8')
    .digest('base64');
}

// PinnedMqttWs is the SDK's MqttWs transport with one change: the SDK builds
// the WebSocket URL as 'wss://' + provisioningHost + ':443/$iothub/websocket',
// a fixed port 443; this subclass returns the URL of DPS_WS_URL instead.
// Everything else (CONNECT, SUBSCRIBE, topics, polling) is the SDK's own code.
class PinnedMqttWs extends MqttWs {
  constructor(url) {
    super();
    this._pinnedUrl = url;
  }

  _getConnectionUri() {
    return this._pinnedUrl;
  }
}

function main() {
  const transportName = need('DPS_TRANSPORT');
  const idScope = need('DPS_ID_SCOPE');
  const registrationId = need('DPS_REGISTRATION_ID');
  const timeoutMs = Number(process.env.DPS_TIMEOUT_MS || '30000');
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    fail(2, 'DPS_TIMEOUT_MS is not a positive number: ' + JSON.stringify(process.env.DPS_TIMEOUT_MS));
  }

  let provisioningHost;
  let transport;
  switch (transportName) {
    case 'mqtt':
      // The SDK connects to 'mqtts://' + provisioningHost; a host:port
      // provisioning host therefore selects the port without any override.
      provisioningHost = need('DPS_HOST') + ':' + need('DPS_PORT');
      transport = new Mqtt();
      break;
    case 'mqttws': {
      const url = need('DPS_WS_URL');
      provisioningHost = new URL(url).host;
      transport = new PinnedMqttWs(url);
      break;
    }
    default:
      fail(2, 'DPS_TRANSPORT must be mqtt or mqttws, not ' + JSON.stringify(transportName));
  }

  let security;
  if (process.env.DPS_SYMMETRIC_KEY) {
    security = new SymmetricKeySecurityClient(registrationId, process.env.DPS_SYMMETRIC_KEY);
  } else if (process.env.DPS_GROUP_KEY) {
    security = new SymmetricKeySecurityClient(registrationId, deriveDeviceKey(process.env.DPS_GROUP_KEY, registrationId));
  } else if (process.env.DPS_CERT_FILE || process.env.DPS_KEY_FILE) {
    security = new X509Security(registrationId, {
      cert: fs.readFileSync(need('DPS_CERT_FILE'), 'utf8'),
      key: fs.readFileSync(need('DPS_KEY_FILE'), 'utf8'),
    });
  } else {
    fail(2, 'one of DPS_SYMMETRIC_KEY, DPS_GROUP_KEY or DPS_CERT_FILE+DPS_KEY_FILE must be set');
  }

  const timer = setTimeout(() => fail(3, 'no registration result within ' + timeoutMs + ' ms'), timeoutMs);
  const client = ProvisioningDeviceClient.create(provisioningHost, idScope, transport, security);
  client.register((err, result) => {
    clearTimeout(timer);
    if (err) {
      const out = { error: String(err && err.message ? err.message : err), name: err && err.name };
      if (err && err.result) {
        out.result = err.result;
      }
      process.stdout.write(JSON.stringify(out) + '\n');
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({
      status: result.status,
      registrationId: result.registrationId,
      assignedHub: result.assignedHub,
      deviceId: result.deviceId,
    }) + '\n');
    process.exit(0);
  });
}

main();
