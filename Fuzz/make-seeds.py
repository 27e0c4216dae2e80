#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (Fuzz/Corpus/<target>/) from the repository's own data:
the bundled card images, personas and reader profiles, the known ATRs, the TEST PKI, and the shapes of
the protocols' messages. Run it again when those change; the seeds are committed."""
import base64, hashlib, os, re, struct, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "Fuzz", "Corpus")

def files(*dirs, ext=".yaml"):
    out = []
    for d in dirs:
        for base, _, names in os.walk(os.path.join(root, d)):
            out += [os.path.join(base, n) for n in sorted(names) if n.endswith(ext)]
    return sorted(out)

def hexbytes(text):
    return bytes(int(h, 16) for h in re.findall(r"[0-9A-Fa-f]{2}", text))

def write(target, blobs):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    # Only this script's own seeds (16 hex digits) are replaced: what a campaign added (libFuzzer's
    # 40-digit names, merged back into the corpus) stays.
    for old in os.listdir(d):
        if re.fullmatch(r"[0-9a-f]{16}", old):
            os.remove(os.path.join(d, old))
    seen = set()
    for b in blobs:
        if b in seen:
            continue
        seen.add(b)
        name = hashlib.sha1(b).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)

def read(path):
    with open(path, "rb") as f:
        return f.read()

images = [p for p in files("CardImages") if "/personas/" not in p]
personas = [p for p in files("CardImages") if "/personas/" in p] + files("CardImages/vitale")
fixtures = files("Tests/CarteSimulatorTests/Fixtures")
profiles = files("Firmware/virtual")

# ATRs: the known table and every image's ATR.
atrs = [hexbytes(m) for m in re.findall(r'"((?:[0-9A-F]{2} ){3,}[0-9A-F]{2})"', read(os.path.join(root, "Sources/CarteCore/KnownATR.swift")).decode())]
for p in images:
    m = re.search(r"atr:\s*\"?([0-9A-Fa-f ]+)", read(p).decode())
    if m:
        atrs.append(hexbytes(m.group(1)))
write("atr", atrs + [b"", b"\x3b", b"\x3f\xff\x95\x00\xff\x91\x81\x71\xa0\x47\x00\x44\x4e\x4f\x43\x54\x00\x00\x00\x00\x00\x00\x4f"])

commands = [hexbytes(x) for x in [
    "00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45 00", "00 A4 02 0C 02 00 01", "00 B0 00 00 00", "00 B0 82 00 10",
    "00 20 00 01 08 FF FF FF FF FF FF FF FF", "00 CB 3F FF 0A 4D 08 70 06 BF 81 01 02 A0 80 00", "00 B0 00 00 00 10 00",
    "00 D6 00 00 00 01 00 " + "5A " * 256, "00 22 41 B6 06 80 01 02 84 01 82", "00 2A 9E 9A 00", "00 88 00 00 20 " + "11 " * 32 + "00",
    "00 C0 00 00 10", "A0 C0 00 00 10", "80 CA 9F 7F 2D", "00 A4 00 0C", "01 A4 04 0C 07 A0 00 00 00 00 00 01"]]
responses = [hexbytes(x) for x in ["90 00", "61 10", "6C 08", "6A 82", "9F 0F", "6F 00 90 00", "63 C2", "62 83", "00 " * 256 + "90 00"]]
write("apdu", commands + responses)

tlvs = [hexbytes(x) for x in ["6F 0F 84 0B D2 50 00 00 02 56 49 54 41 4C 45 A5 00",
                              "70 13 BF 81 01 0F A0 0D 9A 01 03 9B 01 03 A1 05 8C 03 01 00 00",
                              "62 81 05 82 01 01 00 00", "5F 24 03 26 12 31 9F 7F 02 00 01", "81 82 01 00 " + "AA " * 256]]
write("tlv", tlvs + [b"\x00\x00\x6f\x00"])

scripts = [b"# a session\n00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45 00\n00B0820000\n",
           b"00 A4 02 0C 02 00 01  # select\n00 B0 00 00 00 ; read\n", b"3B 75 13 00 00 40 09 EA 90 00", b"zz\n00 a4\n"]
write("hex-script", scripts)

def chunks(parts):
    out = b""
    for p in parts:
        out += bytes([len(p)]) + p
    return out
write("channel", [bytes([0xFF, c]) + chunks(rs) for c, rs in [
    (0, [hexbytes("61 10"), hexbytes("00 " * 16 + "90 00")]), (0, [hexbytes("6C 04"), hexbytes("01 02 03 04 90 00")]),
    (1, [hexbytes("9F 10"), hexbytes("00 " * 16 + "90 00")]), (2, [hexbytes("90 00"), hexbytes("90 00"), hexbytes("90 00")]),
    (0x83, [hexbytes("61 00"), hexbytes("61 00"), hexbytes("90 00")]), (4, [hexbytes("61 02"), hexbytes("6C 02"), hexbytes("AA BB 90 00")]),
    (5, [hexbytes("90 00")])]] + [bytes([0x1F, 0]) + chunks([hexbytes("61 FF")] * 9)])

def frame(t, payload=b""):
    return struct.pack(">I", len(payload) + 1) + bytes([t]) + payload
description = b"".join(bytes([tag]) + struct.pack(">H", len(v)) + v for tag, v in
                       [(1, b"CarteKit Virtual Bi-fente"), (2, b"CarteKit (synthetic)"), (4, b"\x01\x00\x00\x00"), (6, b"\x00\x00\x00\x02"), (7, b"\x00")])
write("wire", [frame(1, b"\x01\x00\x01") + frame(0x10, b"\x00\x00\x00\x01") + frame(0x11) + frame(0x12, b"\x01") + frame(0x13, commands[0]),
               frame(0x80, description), frame(0x81, b"\x01no card"), frame(0x14, b"\x42\x00\x0d\x48"),
               frame(0x20, b'{"op":"keypad","reader":0,"slot":1,"entries":[{"digits":"1234"}]}'), frame(0x80, b"\x00\x00\x00\x01" + b"\x00\x00\x00\x07")])

# vpcd (vsmartcard's card side): the first byte picks the image (the last choice: no card), then the
# frames a stock vpcd sends, 2-byte length and body.
def vframe(body):
    return struct.pack(">H", len(body)) + body
session = vframe(b"\x01") + vframe(b"\x04") + b"".join(vframe(c) for c in commands[:8]) + vframe(b"\x02") + vframe(b"\x04") + vframe(b"\x00")
write("vpcd", [bytes([i]) + session for i in range(9)] + [b"\x08" + vframe(b"\x04") + vframe(commands[1]),
                                                          b"\x00" + vframe(b"") + vframe(b"\x03") + vframe(b"\x00\x00") + b"\x00\x10\x00"])

def verify(fmt, block, length, mn, mx, apdu, t=30):
    return bytes([t, 0, fmt, block, length, mx, mn, 2, 1, 9, 4, 0, 0, 0, 0]) + struct.pack("<I", len(apdu)) + apdu
def modify(fmt, block, length, old, new, mn, mx, confirm, apdu):
    return bytes([30, 0, fmt, block, length, old, new, mx, mn, confirm, 2, 3, 9, 4, 0, 1, 2, 0, 0, 0]) + struct.pack("<I", len(apdu)) + apdu
write("pin-structures", [bytes([d]) + s for d, s in [
    (4, verify(0x82, 0x08, 0, 4, 8, hexbytes("00 20 00 01 08" + " FF" * 8))), (5, verify(0x82, 0, 0, 4, 8, hexbytes("00 20 00 01 00"))),
    (6, verify(0x41, 0x48, 0x04, 4, 12, hexbytes("00 20 00 81 08 2F FF FF FF FF FF FF FF"))), (4, verify(0x89, 0x47, 0x04, 4, 8, hexbytes("00 20 00 01 08 20 FF FF FF FF FF FF FF"))),
    (4, modify(0x82, 0x08, 0, 0, 8, 4, 8, 3, hexbytes("00 24 00 01 10" + " FF" * 16))), (6, modify(0x82, 0, 0, 0, 0, 4, 8, 1, hexbytes("00 24 01 01 00"))),
    (4, bytes([0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x12, 0x04, 0x42, 0x33, 0x00, 0x12]))]])

write("card-image", [read(p) for p in images + fixtures])
write("anonymiser", [read(p) for p in images])
write("reader-profile", [read(p) for p in profiles])
write("persona", [read(p) for p in personas])

pcscd = b"""00000002 winscard.c:258:SCardConnect() Attempting Connect to Lecteur 00 00 using protocol: 3
00000009 Card ATR: 3B 75 13 00 00 45 09 EA 90 00
00000003 winscard.c:320:SCardConnect() Active Protocol: T=0
00000004 APDU: 00 A4 04 00 02 A0 01
00000387 SW: 61 02
00000004 APDU: 00 C0 00 00 02
00001500 SW: 6F 00 90 00
"""
journal = b"Nov 23 10:00:00 host pcscd[42]: 00000004 \x1b[34mAPDU: 00 B0 00 00 04 \x1b[0m\nNov 23 10:00:00 host pcscd[42]: 00000387 SW: 01 02 03 04 90 00\n"
def spy(send, recv):
    def dump(b):
        return "0000 " + " ".join("%02X" % x for x in b)
    return ("SCardTransmit\n i hCard: 0x01\n i bSendLength 0x%08X (%d)\n i bSendBuffer\n i %s\n o bRecvLength 0x%08X (%d)\n o bRecvBuffer\n o %s\n => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.000123]\n"
            % (len(send), len(send), dump(send), len(recv), len(recv), dump(recv))).encode()
write("replay-import", [pcscd, journal, spy(commands[0], hexbytes("6F 00 90 00")), spy(hexbytes("00 B0 00 00 04"), hexbytes("01 02 03 04 90 00"))])

sim = []
for i in range(8):
    sim.append(bytes([i]) + chunks([c for c in commands if len(c) < 256][:8]))
    sim.append(bytes([i]) + chunks([hexbytes("00 A4 00 0C 02 3F 00"), hexbytes("00 A4 04 0C 06 E8 28 BD 08 0F A0"), hexbytes("00 B0 00 00 00"), hexbytes("00 C0 00 00 00")]))
# The security commands of both dialects (#34): the CPS3's IAS-ECC (image 2) and the CPS4's ChipDoc (3).
for i, cs in [(2, ["00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10", "00 20 00 01 08 31 32 33 34 FF FF FF FF", "00 22 41 B6 03 80 01 12",
                   "00 22 41 AA 03 80 01 10", "00 2A 90 A0 05 80 03 61 62 63", "00 2A 9E 9A 00", "00 22 41 B8 03 80 01 1A", "00 2A 80 86 02 81 00"]),
              (3, ["01 A4 04 0C 08 80 25 00 00 01 FF 01 00", "01 20 00 01 08 31 32 33 34 FF FF FF FF", "01 22 81 B6 04 91 02 2C A1",
                   "01 2A 9E 9A 20" + " 11" * 32 + " 00", "01 22 41 B8 03 83 01 20", "01 2A 80 86 01 00 00", "01 2C 03 81"])]:
    sim.append(bytes([i]) + chunks([hexbytes(c) for c in cs]))
write("simulated-card", sim)

write("card-decoders", [bytes([k]) + chunks(rs) for k, rs in [
    (0, [hexbytes("90 00"), hexbytes("90 00"), hexbytes("65 03 80 01 01 90 00")]), (1, [hexbytes("90 00"), hexbytes("00 " * 32 + "90 00")]),
    (2, [hexbytes("90 00")] * 3 + [hexbytes("61 10"), hexbytes("30 82 01 00 " + "00 " * 12 + "90 00")]), (6, [hexbytes("90 00")] * 4),
    (3, [hexbytes("90 00"), hexbytes("70 13 BF 81 01 0F A0 0D 9A 01 03 9B 01 03 A1 05 8C 03 01 00 00 90 00")]),
    (0x40, [hexbytes("90 00"), bytes(range(80)) + hexbytes("90 00")]), (0x40, [hexbytes("6A 82")])]])

apcv = [b"APCV1:AAAA", b"APCV1:" + base64.urlsafe_b64encode(bytes(range(64))).rstrip(b"=")]
qr = os.environ.get("CARTE_QR")
if qr:
    apcv.append(qr.encode())
write("apcv", apcv + [bytes(range(80))])

# The apCV service's HTTP framing: request headers, bodies, and the answers (Fuzz/Fixtures holds one
# identity and one error document as the service wrote them).
body = b'{"software-id":"CARTEKIT-DEMO","token":"AAAA"}'
http = [b"POST /apcv/v1/identity HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        b"\r\nGET / HTTP/1.1\nHost: x\n\n", b"POST / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", b"POST / HTTP/1.1\r\nX : a\r\n\r\n", body,
        b'{"token":"not base64!","software-id":"X"}']
http += [read(p) for p in files("Fuzz/Fixtures", ext=".json")]
write("apcv-http", http)

# The rights service's HTTP framing (carte sim rights-service): request heads and answers.
answer = b'{"schema":"carte.rights-error/1","status":404,"error":"unknown-nir","message":"no one with NIR 299019900000077"}'
write("rights-http", [b"GET /rights/v1/172056912304522?date=2026-06-15 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nAccept: application/json",
                      b"GET /rights/v1/2%2072%2005%2069 HTTP/1.0\r\nContent-Length: 0", b"POST /rights/v1/1 HTTP/1.1\r\nTransfer-Encoding: chunked",
                      b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                      b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer,
                      b"HTTP/1.1 400 Bad Request\r\nContent-Length: 99999\r\n\r\n{}"])

# carte agent: JSON-RPC requests, Origin headers, upgrade headers (Host, Origin, Authorization lines), allow-lists.
write("agent", [b'{"jsonrpc":"2.0","id":1,"method":"vitale.read","params":{"reader":"CarteKit Virtual Bi-fente 00 00"}}',
                b'{"jsonrpc":"2.0","id":"x","method":"cpx.sign","params":{"data":"b3Jkb25uYW5jZQ==","pin":"1234"}}',
                b'[{"jsonrpc":"2.0","id":1,"method":"hello"}]', b'{"jsonrpc":"2.0","id":true,"method":"hello"}',
                b"https://App.Example.fr:443", b"http://[::1]:8080",
                b"127.0.0.1:9743\nhttps://app.example.fr\n", b"localhost:9743\n\nBearer " + b"ab" * 32,
                b"# the practice\nhttps://facturation.example.fr  # billing\nnot an origin\n"])

# carte sim console: action bodies, request headers (Host, Origin, Content-Type, key lines), daemon traces.
write("console", [b'{"slot":"CarteKit Virtual Bi-fente PIN pad 00 00","image":"bundled:vitale/family-five.yaml"}',
                  b'{"slot":"S","upload":{"name":"x.yaml","text":"format: cartekit-image/1\\n"}}',
                  b'{"slot":"S","fault":"sw","sw":"6f00","count":2}', b'{"slot":"S","fault":"slow","ms":1.5}',
                  b'{"slot":"S","entries":[{"digits":"1234"},{"cancel":true},{"timeout":true}]}', b'{"slot":"S","entries":[{"digits":"12a4"}]}',
                  b"127.0.0.1:8795\nhttp://127.0.0.1:8795\napplication/json; charset=utf-8\n" + b"cd" * 16,
                  b"localhost:8795\nhttp://evil.example\ntext/plain\n",
                  b'{"ok":true,"slot":"S","atr":"3B 75 13 00 00 45 09 EA 90 00","protocol":"T=1","exchanges":[{"command":"00 A4 04 00 02 3F 00","response":"90 00","ms":0.1},{"command":"00 20 00 01 04 ?? ?? ?? ??","response":"63 C2"}]}'])

# PC/SC library output (#39): reader-state arrays of each platform (80, 64, 61 bytes an entry) with an ATR
# and a state word, and reader multi-strings in UTF-8 and UTF-16LE (the first byte is the length / 4).
import struct
def readerstate(size, word, atr_at, capacity, event, atr):
    entry = bytearray(size)
    struct.pack_into("<Q", entry, 0, 0x7F0011223344)
    entry[16 + word:16 + 2 * word] = event.to_bytes(word, "little")
    entry[16 + 2 * word:16 + 3 * word] = len(atr).to_bytes(word, "little")
    entry[atr_at:atr_at + len(atr)] = atr[:capacity]
    return bytes(entry)
vitale_atr = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")
multi8 = b"CarteKit Virtual Bi-fente 00 00\0CarteKit Virtual Bi-fente 00 01\0\0"
multi16 = "Lecteur \u00e9 00 00\0\0".encode("utf-16-le")
write("pcsc-marshal", [readerstate(80, 8, 40, 33, 0x00020222, vitale_atr) * 2,
                       readerstate(64, 4, 28, 36, 0x00010010, b"") + readerstate(64, 4, 28, 36, 0x00030222, vitale_atr),
                       readerstate(61, 4, 28, 33, 0x222, vitale_atr) * 3,
                       readerstate(80, 8, 40, 33, 0x22, b"\xff" * 40),
                       bytes([len(multi8) // 4 + 1]) + multi8, bytes([len(multi16) // 4 + 1]) + multi16,
                       bytes([255]) + b"\xc3\x28 invalid UTF-8\0\0"])

# The shared-memory lane (#39): operations of both sides (see FuzzEntries.lane): 3 poll, 4 transmit
# (length byte + command), 5 close, 6 answer (length byte + response), 7 decline, 0/1/2 raw state or
# length values, 8 a posted command of a raw length.
select = bytes.fromhex("00A4040C")
def lane_tx(command): return b"\x04" + bytes([len(command)]) + command
write("lane", [b"\x03" + lane_tx(select) + b"\x03" + b"\x06\x02\x90\x00" + lane_tx(select),
               b"\x03" + lane_tx(select) + b"\x03\x07" + lane_tx(select) + b"\x05\x03",
               b"\x00\x00\x00\x00\x02" + b"\x01\xff\xff\xff\xff\x03",
               b"\x03\x08\x00\x01\x00\x11\x03" + b"\x02\x7f\xff\xff\xff\x00\x00\x00\x00\x03" + lane_tx(select),
               b"\x03\x04\xff\x01\x03\x06\xff\x02",
               b"\x00\x00\x00\x00\x4d\x03\x05\x04\x00"])

x509 = []
for p in files("CardImages/cps/pki", ext=".pem"):
    if p.endswith(".key.pem"):
        continue
    pem = read(p)
    x509.append(pem)
    body = b"".join(l for l in pem.splitlines() if not l.startswith(b"-----"))
    x509.append(base64.b64decode(body))
write("x509", x509)
print("seeds written under", corpus)
