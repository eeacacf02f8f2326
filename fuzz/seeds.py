#!/usr/bin/env python3
"""fuzz/seeds.py: writes the seed corpora under fuzz/corpus/<target>/.

Each seed is the target's input fields written one after another (see the
banner of fuzz/fuzz_<target>.c): single bytes, little-endian integers, and
NUL-terminated strings.  Run it again after changing an input layout; the
files it writes are committed.
"""
import base64
import hashlib
import hmac
import ipaddress
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def b(v):
    return bytes([v & 0xFF])


def u16(v):
    return struct.pack("<H", v)


def u64(v):
    return struct.pack("<q", v) if v < 0 else struct.pack("<Q", v)


def s(text):
    return (text.encode() if isinstance(text, str) else text) + b"\0"


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


KEY = bytes(range(1, 33))
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_2Ld0Gkz0aYdhZPQk4BXIU6"
TS = 1714000000
BODY = b'{"type":"orders.created","data":{"id":7}}'


def standard_sig(key, msg_id, ts, body):
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def secret_seeds():
    t = "secret"
    # flags, secret, msg_id, prefix, ts, body
    write(t, "whsec-valid", b(0) + s(WHSEC) + s(MSG_ID) + s("") + u64(TS) + BODY)
    write(t, "whsec-25-bytes-padded", b(0) + s("whsec_" + base64.b64encode(bytes(25)).decode())
          + s(MSG_ID) + s("") + u64(TS) + BODY)
    write(t, "whsec-64-bytes", b(0) + s("whsec_" + base64.b64encode(bytes(range(64))).decode())
          + s(MSG_ID) + s("") + u64(TS) + BODY)
    write(t, "whsec-too-short", b(0) + s("whsec_" + base64.b64encode(bytes(23)).decode())
          + s(MSG_ID) + s("") + u64(TS) + BODY)
    write(t, "whsec-bad-padding", b(0) + s("whsec_AAAA=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
          + s(MSG_ID) + s("") + u64(TS) + BODY)
    write(t, "text-secret-hex-prefix", b(0x80) + s("a-shared-text-secret") + s(MSG_ID)
          + s("sha256=") + u64(TS) + BODY)
    write(t, "text-secret-control-char", b(0) + s("abc\x01defghij") + s(MSG_ID) + s("")
          + u64(TS) + BODY)
    write(t, "scheme-name", b(0) + s("standard-ed25519") + s(MSG_ID) + s("") + u64(TS) + BODY)
    # flags bit 0: a valid secret from the body's first bytes; bits 1-2 its kind
    write(t, "made-whsec", b(1) + s("") + s(MSG_ID) + s("") + u64(TS) + KEY + BODY)
    write(t, "made-whsk-seed", b(1 | 2) + s("") + s(MSG_ID) + s("") + u64(TS) + KEY + BODY)
    write(t, "made-whsk-seed-public", b(1 | 4) + s("") + s(MSG_ID) + s("") + u64(TS) + KEY + BODY)
    write(t, "made-whpk", b(1 | 6) + s("") + s(MSG_ID) + s("") + u64(TS) + KEY + BODY)
    write(t, "long-msg-id", b(1) + s("") + s("m" * 150) + s("") + u64(-1) + KEY)


def verify_seeds():
    t = "verify"
    key64 = KEY + bytes(32)
    sig = standard_sig(KEY, MSG_ID, TS, BODY)
    # flags, secret, msg_id, header, ts, key bytes (64), body
    write(t, "standard-valid", b(0) + s(WHSEC) + s(MSG_ID) + s(sig) + u64(TS) + key64 + BODY)
    write(t, "standard-rotated", b(0) + s(WHSEC) + s(MSG_ID)
          + s("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + sig + " v1a,xyz")
          + u64(TS) + key64 + BODY)
    write(t, "standard-wrong-ts", b(0) + s(WHSEC) + s(MSG_ID) + s(sig) + u64(TS + 1) + key64 + BODY)
    write(t, "standard-garbage", b(0) + s(WHSEC) + s(MSG_ID) + s("v1, v1,== v1,AB=C  v2,abc")
          + u64(TS) + key64 + BODY)
    # bit 0: secret made from the key bytes (bits 1-2 kind); bit 3: a genuine
    # signature inserted at entry flags >> 4
    write(t, "made-whsec-signed", b(1 | 8 | 0x10) + s("") + s(MSG_ID) + s("v1,abc v1,def")
          + u64(TS) + key64 + BODY)
    write(t, "made-whsk-signed", b(1 | 2 | 8) + s("") + s(MSG_ID) + s("v1a,abc")
          + u64(TS) + key64 + BODY)
    write(t, "made-whsk-public-signed", b(1 | 4 | 8 | 0x20) + s("") + s(MSG_ID) + s("v1a,a v1a,b")
          + u64(TS) + key64 + BODY)
    write(t, "made-whpk-signed", b(1 | 6 | 8) + s("") + s(MSG_ID) + s("") + u64(TS) + key64 + BODY)
    write(t, "whpk-not-a-key", b(0) + s("whpk_" + "A" * 43 + "=") + s(MSG_ID) + s("v1a," + "A" * 86 + "==")
          + u64(TS) + key64 + BODY)


def destination_seeds():
    t = "destination"

    def nets(*items):
        out = b(len(items))
        for fam, addr, bits in items:
            out += b(fam) + addr + b(bits)
        return out

    def probe(how, addr):
        return b(how) + addr

    lo4 = bytes([127, 0, 0, 1])
    ten = bytes([10, 1, 2, 3])
    pub4 = bytes([93, 184, 216, 34])
    lo6 = bytes(15) + b"\x01"
    ll6 = b"\xfe\x80" + bytes(13) + b"\x01"
    pub6 = b"\x26\x06\x28\x00\x02\x20\x00\x01" + bytes(7) + b"\x01"
    # flags, list, url, networks, probes
    write(t, "private-list", b(0) + s("10.0.0.0/8, 192.168.1.0/24 ::1/128\tfe80::/10")
          + s("https://10.1.2.3/hook") + nets((0, ten, 8)) + probe(0, ten) + probe(0, pub4))
    write(t, "http-loopback", b(1) + s("") + s("http://127.0.0.1:8080/x")
          + nets() + probe(2, lo4) + probe(1, lo6) + probe(1, pub6))
    write(t, "credentials", b(0) + s("") + s("https://user:pw@example.com/") + nets())
    write(t, "scheme", b(1) + s("") + s("ftp://1.2.3.4/") + nets())
    write(t, "mapped-loopback", b(0) + s("") + s("https://[::ffff:127.0.0.1]/") + nets()
          + probe(4, lo4) + probe(12, lo4) + probe(4, pub4))
    write(t, "localhost-names", b(0) + s("127.0.0.1") + s("https://a.LocalHost/") + nets()
          + probe(0, lo4))
    write(t, "hex-host", b(4) + s("") + s("https://0x7f.1/") + nets((1, ll6, 64))
          + probe(1, ll6) + probe(0, lo4))
    write(t, "octal-host", b(6) + s("bad/99, 1.2.3.4/33") + s("https://0177.0.0.1:443/")
          + nets((0, lo4, 32), (1, lo6, 128)) + probe(0, lo4) + probe(17, lo6))
    write(t, "zone-id", b(2) + s("fe80::/10") + s("https://[fe80::1%25eth0]/") + nets((1, ll6, 10))
          + probe(1, ll6))
    write(t, "abbreviated-cidr", b(0) + s("10/8,172.16/12 ,192.168.1/24") + s("https://172.20.0.1/")
          + nets())
    write(t, "too-many", b(0) + s(",".join(f"10.0.{i}.0/24" for i in range(65))) + s("https://x/")
          + nets())

    def wrap(kind):
        # probe "how" for an IPv4 address carried in IPv6 form `kind` (wrap_ipv4)
        return 4 | (kind & 1) << 3 | (kind & 6) << 4

    def v6(text):
        return ipaddress.IPv6Address(text).packed

    def v4(text):
        return ipaddress.IPv4Address(text).packed

    # every IPv6 form that carries an IPv4 address, for loopback (allowed as
    # IPv4) and a public address, with the host written in three notations
    carried = b"".join(probe(wrap(k), a) for k in range(8) for a in (lo4, pub4))
    write(t, "embedded-ipv4", b(0) + s("127.0.0.1/32") + s("https://[::ffff:0:127.0.0.1]/")
          + nets((0, lo4, 32)) + carried)
    write(t, "embedded-ipv4-upper", b(4) + s("") + s("https://[2001::7f00:1]/")
          + nets((0, lo4, 32)) + carried)
    write(t, "embedded-ipv4-dotted", b(6) + s("") + s("https://[64:ff9b::127.0.0.1]/")
          + nets() + carried)
    # the special ranges just inside and just outside their edges
    edges6 = ["2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:200::",
              "2001:db8::1", "2001:db9::", "2002::1", "2620:4f:8000::1", "2620:4f:8001::",
              "3fff::1", "3fff:1000::", "5f00::1", "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
              "4000::", "100::1", "100:0:0:1::1", "::ffff:0:7f00:1", "64:ff9b:1::a00:1"]
    edges4 = ["192.31.196.1", "192.31.197.1", "192.52.193.1", "192.88.99.1", "192.175.48.1",
              "198.19.255.255", "198.20.0.0", "255.255.255.255", "223.255.255.255"]
    write(t, "special-edges", b(0) + s("") + s("https://[3fff::1]/") + nets()
          + b"".join(probe(1, v6(a)) for a in edges6) + b"".join(probe(0, v4(a)) for a in edges4))
    write(t, "allowed-ipv6-in-special", b(2) + s("2001::/32") + s("https://[2001:0::7f00:1%25eth0]/")
          + nets((1, v6("2001::"), 32), (1, v6("2002:7f00:1::"), 48))
          + probe(1, v6("2001::7f00:1")) + probe(1, v6("2002:7f00:1::1")) + probe(wrap(6), lo4))


def headers_seeds():
    t = "headers"

    def fields(scheme, nsecrets, expired, made, msg_id, sig_header, prefix, secrets, headers, body):
        out = b(scheme) + b(nsecrets) + u16(expired) + u16(made) + u64(TS) + s(msg_id) \
            + s(sig_header) + s(prefix)
        for sec in secrets:
            out += sec if isinstance(sec, bytes) and len(sec) == 64 else s(sec)
        out += b(len(headers))
        for h in headers:
            out += s(h)
        return out + body

    old = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
    write(t, "standard-rotation", fields(0, 2, 0, 0, MSG_ID, "", "", [WHSEC, old],
                                         ["Authorization: Bearer abc", "X-Tenant: 7"], BODY))
    write(t, "standard-expired", fields(0, 3, 0b110, 0, MSG_ID, "", "", [WHSEC, old, WHSEC], [], BODY))
    write(t, "unusable-current", fields(0, 2, 0, 0, MSG_ID, "", "", ["nope", old], [], BODY))
    write(t, "ed25519-made", fields(3, 2, 0, 0b11, MSG_ID, "", "", [KEY * 2, bytes(64)], ["X-A: b"], BODY))
    write(t, "hex-prefix", fields(1, 1, 0, 0, MSG_ID, "X-Hub-Signature-256", "sha256=",
                                  ["a-shared-text-secret"], [], BODY))
    write(t, "timestamped", fields(2, 2, 0, 0, MSG_ID, "Stripe-Signature", "",
                                   ["first-text-secret", "second-text-secret"], [], BODY))
    write(t, "none", fields(4, 0, 0, 0, MSG_ID, "", "", [], ["Authorization: Basic dTpw"], BODY))
    write(t, "long-msg-id", fields(0, 1, 0, 0, "m" * 300, "", "", [WHSEC], [], BODY))


def response_seeds():
    t = "response"

    def fields(flags, cap, enc, status, retry_kind, retry, repeat, chunk, retry_text, payload):
        return (b(flags) + u16(cap) + b(enc) + u16(status - 200) + b(retry_kind) + u64(retry)
                + b(repeat - 1) + b(chunk - 1) + s(retry_text) + payload)

    utf8 = 6
    write(t, "ok", fields(0, 1024, utf8, 200, 0, 0, 1, 1, "", b'{"ok":true}'))
    write(t, "unavailable-retry-after", fields(0, 1024, utf8, 503, 1, 120, 1, 1, "", b"busy"))
    write(t, "too-many-retry-date", fields(0, 64, utf8, 429, 2, 0, 1, 1,
                                           " Wed, 21 Oct 2015 07:28:00 GMT", b"slow down"))
    write(t, "retry-future-date", fields(0, 64, utf8, 503, 3, 3600, 1, 1, "", b""))
    write(t, "chunked", fields(4, 100, utf8, 200, 0, 0, 20, 7, "", b"chunk-data-"))
    write(t, "until-eof", fields(8, 10, 8, 201, 0, 0, 3, 1, "", b"\xe9t\xe9"))
    write(t, "redirect", fields(0, 1024, utf8, 301, 0, 0, 1, 1, "", b"moved"))
    write(t, "big-body-cap", fields(0, 16, utf8, 200, 0, 0, 255, 1, "", b"x" * 300))
    write(t, "refused", fields(2, 1024, utf8, 200, 0, 0, 1, 1, "", b"never read"))
    write(t, "raw-invalid-utf8", fields(1, 1024, utf8, 200, 0, 0, 1, 1, "",
                                        b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\n\xff\xfe\x00ab\xc3"))
    write(t, "raw-no-status", fields(1, 1024, utf8, 200, 0, 0, 1, 1, "", b"garbage\r\n\r\n"))
    write(t, "euc-jp", fields(0, 1024, 1, 200, 0, 0, 1, 1, "", b"\xa4\xa2\x8e\xb1\x8f\xa1\xa1\xa4"))


if __name__ == "__main__":
    secret_seeds()
    verify_seeds()
    destination_seeds()
    headers_seeds()
    response_seeds()
    sys.exit(0)
