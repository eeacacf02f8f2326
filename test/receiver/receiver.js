#!/usr/bin/env node
// Loopback webhook receiver for the tests, the demo and the benchmarks.
//
//   node receiver.js --port 0 --log FILE [--secret whsec_...] [--host 127.0.0.1]
//
// Prints "listening <port>" and writes the port to FILE.port (atomically).
// Every request is appended to FILE as one JSON line *before* it is answered:
//   {"t", "method", "path", "query", "headers", "id", "body", "verified", "verify_error"}
// "verified" is the verdict of the Standard Webhooks reference library
// (npm standardwebhooks) on webhook-id/-timestamp/-signature, or null when no
// --secret was given.  The answer depends on the last path segments, so any
// prefix can tell endpoints apart (/ep1/ok, /ep2/flaky/2, ...):
//   /ok  /status/NNN  /flaky/N  /retry-after/S  /retry-after-date/S  /random500/PCT  /hang
//   /slow/MS  /redirect  /big/BYTES  /endless  /close   (anything else: 200)
//   /randomclose/PCT  /randomhang/PCT  /randomslow/PCT: for a random PCT% of requests, close the
//   socket unanswered, never answer, or answer 200 after 1.5 s; the others get 200 at once
//   /randomcut/PCT: PCT% closed, half before any answer and half mid-response
//   /retry-after-mixed/S: 429 (even event ids) or 503 (odd) with Retry-After: S, then 200
//   /bigheaders/BYTES: 200 with BYTES of response headers
'use strict';

const http = require('http');
const fs = require('fs');
const { performance } = require('perf_hooks');

let Webhook = null;
try { ({ Webhook } = require('standardwebhooks')); } catch (e) { Webhook = null; }

const args = { port: 0, host: '127.0.0.1', log: null, secret: null };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  args[k] = process.argv[i + 1];
}
if (!args.log) { console.error('usage: receiver.js --port N --log FILE [--secret S]'); process.exit(2); }
if (args.secret && !Webhook) { console.error('standardwebhooks is not installed: npm ci in test/receiver'); process.exit(2); }
const verifier = args.secret ? new Webhook(args.secret) : null;
const logFd = fs.openSync(args.log, 'a');
const seen = new Map();   // webhook-id -> requests so far, for flaky and retry-after

function count(id) {
  const n = (seen.get(id) || 0) + 1;
  seen.set(id, n);
  return n;
}

function answer(res, status, body, headers) {
  res.writeHead(status, Object.assign({ 'content-type': 'text/plain' }, headers || {}));
  res.end(body);
}

// Never answers: the connection stays open until the client gives up (or 2 minutes).
function hang(req) {
  const t = setTimeout(() => req.socket.destroy(), 120000);
  req.socket.on('close', () => clearTimeout(t));
  return undefined;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://receiver');
    const id = req.headers['webhook-id'] || null;
    let verified = null;
    let verifyError = null;
    if (verifier) {
      try { verifier.verify(body, req.headers); verified = true; } catch (e) { verified = false; verifyError = String(e.message || e); }
    }
    const line = JSON.stringify({
      t: performance.timeOrigin + performance.now(), method: req.method, path: url.pathname,
      query: url.search, headers: req.headers, id, body, verified, verify_error: verifyError,
    }) + '\n';
    fs.writeSync(logFd, line);

    const seg = url.pathname.split('/').filter(Boolean);
    const last = seg[seg.length - 1] || '';
    const prev = seg[seg.length - 2] || '';
    const n = id ? count(id + ' ' + url.pathname) : 1;
    // for the random modes: is this request one of the PCT % (the last segment)?
    const picked = () => Math.random() * 100 < parseInt(last, 10);
    switch (prev) {
      case 'status': return answer(res, parseInt(last, 10), 'status ' + last);
      case 'flaky': return n <= parseInt(last, 10) ? answer(res, 500, 'flaky') : answer(res, 200, 'ok');
      case 'retry-after':
        return n === 1 ? answer(res, 429, 'slow down', { 'retry-after': last }) : answer(res, 200, 'ok');
      case 'retry-after-date':
        return n === 1
          ? answer(res, 503, 'later', { 'retry-after': new Date(Date.now() + 1000 * parseInt(last, 10)).toUTCString() })
          : answer(res, 200, 'ok');
      case 'random500': return picked() ? answer(res, 500, 'random') : answer(res, 200, 'ok');
      case 'retry-after-mixed': {
        // the first request of each webhook-id: 429 for even event ids, 503 for odd ones
        const code = /[13579]$/.test(id || '') ? 503 : 429;
        return n === 1 ? answer(res, code, 'later', { 'retry-after': last }) : answer(res, 200, 'ok');
      }
      case 'randomclose': return picked() ? req.socket.destroy() : answer(res, 200, 'ok');
      case 'randomcut':
        if (!picked()) return answer(res, 200, 'ok');
        if (Math.random() < 0.5) return req.socket.destroy();
        // mid-response: the status line, headers and 10 of the 100 bytes promised
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('0123456789');
        return setImmediate(() => req.socket.destroy());
      case 'bigheaders': {
        // BYTES of response headers, in 1 kB lines, written raw
        const lines = [];
        for (let left = parseInt(last, 10); left > 0; left -= 1024) lines.push(`x-bomb-${lines.length}: ${'a'.repeat(1000)}`);
        req.socket.end(`HTTP/1.1 200 OK\r\n${lines.join('\r\n')}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok`);
        return undefined;
      }
      case 'randomhang': return picked() ? hang(req) : answer(res, 200, 'ok');
      case 'randomslow': return picked() ? setTimeout(() => answer(res, 200, 'ok'), 1500) : answer(res, 200, 'ok');
      case 'slow': return setTimeout(() => answer(res, 200, 'ok'), parseInt(last, 10));
      case 'big': {
        let left = parseInt(last, 10);
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(left) });
        const block = Buffer.alloc(65536, 'x');
        const pump = () => {
          while (left > 0) {
            const part = left >= block.length ? block : block.subarray(0, left);
            left -= part.length;
            if (!res.write(part)) return res.once('drain', pump);
          }
          res.end();
        };
        res.on('close', () => { left = 0; });
        return pump();
      }
      default: break;
    }
    switch (last) {
      case 'hang': return hang(req);
      case 'redirect': return answer(res, 302, 'moved', { location: `http://127.0.0.1:${server.address().port}/ok` });
      case 'close': return req.socket.destroy();
      case 'endless': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const block = Buffer.alloc(65536, 'y');
        let open = true;
        res.on('close', () => { open = false; });
        const pump = () => { while (open) { if (!res.write(block)) return res.once('drain', pump); } return undefined; };
        return pump();
      }
      default: return answer(res, 200, 'ok');
    }
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.requestTimeout = 0;
server.listen(parseInt(args.port, 10), args.host, () => {
  const port = server.address().port;
  fs.writeFileSync(args.log + '.port.tmp', String(port));
  fs.renameSync(args.log + '.port.tmp', args.log + '.port');
  process.stdout.write(`listening ${port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
