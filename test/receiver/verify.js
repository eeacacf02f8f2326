#!/usr/bin/env node
// Independent signature checks for the tests: reads one JSON object per
// line on stdin, {"scheme", "key", "headers", "body"}, and prints one line
// per object: "ok" or "fail: <reason>".
//   scheme "standard": key is a whsec_ secret; the Standard Webhooks
//                      reference library (npm standardwebhooks) verifies.
//   scheme "ed25519":  key is a whpk_ public key; Node's crypto verifies
//                      every v1a signature of webhook-signature (one must pass).
'use strict';

const crypto = require('crypto');
const readline = require('readline');
const { Webhook } = require('standardwebhooks');

function ed25519(pub, headers, body) {
  const raw = Buffer.from(pub.replace(/^whpk_/, ''), 'base64');
  // SubjectPublicKeyInfo for an ed25519 key: fixed 12-byte prefix + the key
  const der = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
  const key = crypto.createPublicKey({ key: der, format: 'der', type: 'spki' });
  const msg = Buffer.from(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`, 'utf8');
  const now = Math.floor(Date.now() / 1000);
  if (Math.abs(now - parseInt(headers['webhook-timestamp'], 10)) > 300) throw new Error('timestamp out of tolerance');
  for (const part of (headers['webhook-signature'] || '').split(' ')) {
    const [version, sig] = part.split(',');
    if (version === 'v1a' && crypto.verify(null, msg, key, Buffer.from(sig, 'base64'))) return;
  }
  throw new Error('no matching v1a signature');
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const c = JSON.parse(line);
  try {
    if (c.scheme === 'standard') new Webhook(c.key).verify(c.body, c.headers);
    else if (c.scheme === 'ed25519') ed25519(c.key, c.headers, c.body);
    else throw new Error(`unknown scheme ${c.scheme}`);
    process.stdout.write('ok\n');
  } catch (e) {
    process.stdout.write(`fail: ${e.message || e}\n`);
  }
});
