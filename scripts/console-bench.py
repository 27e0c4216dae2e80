#!/usr/bin/env python3
"""How fast a change reaches the QA console's pages (carte sim console), against the daemon's own
control round trip measured in the same run.

    scripts/console-bench.py [ROUNDS]      (default 200; needs a built carte: CARTE=path or .build/release)

Starts a simulator daemon with its console (carte sim serve --console 0) on a temporary socket, follows
the console's feed as a page does (server-sent events), and for ROUNDS removals and insertions measures:
  - a control request that changes nothing ({"op":"status"}) over the daemon's Unix socket;
  - the reference: a removal or an insertion on that socket (what carte sim remove/insert sends),
    until the daemon answers it;
  - the same change until the page's feed carries it (what "at once" costs);
  - a change made through the console's own API (what a page's button sends) until the feed carries it.
Prints medians and 90th percentiles in milliseconds and each as a ratio of the reference."""
import http.client, json, os, socket, statistics, struct, subprocess, sys, tempfile, time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARTE = os.environ.get("CARTE") or os.path.join(ROOT, ".build/release/carte")
SLOT = "CarteKit Virtual Mono-fente 00 00"

def control(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    def frame(t, payload): s.sendall(struct.pack(">I", len(payload) + 1) + bytes([t]) + payload)
    def receive():
        n = struct.unpack(">I", recv(4))[0]
        body = recv(n)
        return body[0], body[1:]
    def recv(n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk: raise EOFError
            out += chunk
        return out
    frame(0x01, bytes([2]) + struct.pack(">H", 1)); receive()
    frame(0x20, json.dumps(request).encode()); t, body = receive()
    s.close()
    return json.loads(body)

def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]

def main():
    work = tempfile.mkdtemp(prefix="cartekit-console-bench-")
    sock = os.path.join(work, "sim.sock")
    daemon = subprocess.Popen([CARTE, "sim", "serve", "--exit-with-parent", "--socket", sock, "--profile", "mono-fente", "--console", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = daemon.stdout.readline().strip().split("console on ")[1]
        port = int(address.split(":")[2].split("/")[0])
        key = address.split("#key=")[1]
        feed = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        feed.request("GET", "/api/feed", headers={"X-CarteKit-Console-Key": key})
        stream = feed.getresponse()
        assert stream.status == 200, stream.status
        def until(what):
            while True:
                line = stream.fp.readline().decode()
                if not line: raise EOFError("the feed ended")
                if line.startswith("data: ") and what in line: return
        until('"type":"hello"')
        api = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        def act(action, body):
            api.request("POST", "/api/" + action, body=json.dumps(body), headers={
                "X-CarteKit-Console-Key": key, "Origin": "http://127.0.0.1:%d" % port, "Content-Type": "application/json"})
            answer = api.getresponse().read()
            assert b'"ok":true' in answer, answer
        status, reference, daemon_path, console_path = [], [], [], []
        for i in range(ROUNDS):
            t = time.perf_counter(); control(sock, {"op": "status"}); status.append(time.perf_counter() - t)
            # On the daemon's socket (carte sim remove/insert): its own answer, then the page's feed.
            for request, what in [({"op": "remove", "reader": SLOT}, "removed"), ({"op": "insert", "reader": SLOT, "image": "bundled:demo/iso-generic.yaml"}, "inserted")]:
                t = time.perf_counter(); control(sock, request); reference.append(time.perf_counter() - t)
                until('"what":"%s"' % what); daemon_path.append(time.perf_counter() - t)
            # Through the console's API (a page's button), until the feed has it.
            t = time.perf_counter(); act("remove", {"slot": SLOT})
            until('"what":"removed"'); console_path.append(time.perf_counter() - t)
            t = time.perf_counter(); act("insert", {"slot": SLOT, "image": "bundled:demo/iso-generic.yaml"})
            until('"what":"inserted"'); console_path.append(time.perf_counter() - t)
        ref = statistics.median(reference)
        print("carte sim console: %d rounds (%s)" % (ROUNDS, CARTE))
        for name, values in [("a control request that changes nothing (status)", status),
                             ("reference: a removal or insertion, until the daemon answers it", reference),
                             ("the same, until the page's feed has it", daemon_path),
                             ("a change through the console's API, until the page's feed has it", console_path)]:
            m = statistics.median(values)
            print("  %-68s median %7.3f ms  p90 %7.3f ms  x%.1f of the reference" % (name, m * 1000, percentile(values, 0.9) * 1000, m / ref))
    finally:
        daemon.terminate(); daemon.wait()

main()
