#!/usr/bin/env bash
# The latency of `carte agent` (docs/agent.md): a readers listing and a Vitale read through the agent's
# WebSocket, against the same read by `carte read --backend pcsc` and against one SELECT round trip on
# the same pcscd (the floor), all in one run through a private pcscd.
#
#   scripts/agent-bench.sh [RUNS]          (root: a private pcscd in its own mount namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-30}"
say() { printf 'agent-bench: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (a private pcscd in its own mount namespace)"; exit 1; }
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product carte >&2
swift build -c release --product ifdcarte >&2
BIN="$(swift build -c release --show-bin-path)"
WORK="$(mktemp -d)"
AGENT=""
# shellcheck source=scripts/private-pcscd.sh
. scripts/private-pcscd.sh
cleanup() {
  [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null || true
  vr_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

vr_start bundled:demo/vitale2-demo.yaml
XDG_CONFIG_HOME="$WORK/config" "$BIN/carte" agent serve --backend pcsc --port 0 --allow http://127.0.0.1:1 >"$WORK/agent.out" 2>"$WORK/agent.log" &
AGENT=$!
for _ in $(seq 100); do grep -q listening "$WORK/agent.out" 2>/dev/null && break; sleep 0.05; done
PORT=$(sed -n 's/^listening on ws:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/agent.out")
[ -n "$PORT" ] || { say "the agent did not start: $(cat "$WORK/agent.log")"; exit 1; }

/usr/bin/python3 - "$PORT" "$N" "$BIN/carte" <<'PY'
import json, statistics, subprocess, sys, time, websocket
from smartcard.System import readers
port, n, carte = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def stats(times):
    times = sorted(times)
    return statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000
# The floor: one SELECT of the Vitale's application, round trip through the same pcscd.
c = readers()[0].createConnection(); c.connect()
select = list(bytes.fromhex("00A404000BD25000000256495441 4C4500".replace(" ", "")))
floor = []
for i in range(n + 5):
    t = time.perf_counter(); c.transmit(select); floor.append(time.perf_counter() - t)
c.disconnect()
ws = websocket.create_connection("ws://127.0.0.1:%d/carte.agent/1" % port, origin="http://127.0.0.1:1", timeout=30)
k = [0]
def call(method, params=None):
    k[0] += 1
    ws.send(json.dumps({"jsonrpc": "2.0", "id": k[0], "method": method, "params": params or {}}))
    a = json.loads(ws.recv())
    assert "result" in a, a
    return a["result"]
def timed(f, pace=0.0):
    # pace: a pause between calls, outside the timed part (the agent allows 20 messages a second).
    out = []
    for i in range(n + 3):
        t = time.perf_counter(); f(); out.append(time.perf_counter() - t)
        time.sleep(pace)
    return out[3:]
listing = timed(lambda: call("readers.list"), 0.06)
reading = timed(lambda: call("vitale.read"), 0.06)
ws.close()
cli = timed(lambda: subprocess.run([carte, "read", "--backend", "pcsc", "--json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
f, fp = stats(floor[5:]); l, lp = stats(listing); r, rp = stats(reading); c_, cp = stats(cli)
print("agent-bench: %d runs each, through one private pcscd" % n)
print("  SELECT round trip (pyscard, the floor)     median %8.3f ms  p95 %8.3f ms" % (f, fp))
print("  readers.list through the agent             median %8.3f ms  p95 %8.3f ms  = %6.1f x the floor" % (l, lp, l / f))
print("  vitale.read through the agent              median %8.3f ms  p95 %8.3f ms  = %6.1f x the floor" % (r, rp, r / f))
print("  carte read --backend pcsc (a process)      median %8.3f ms  p95 %8.3f ms  = %6.1f x the floor" % (c_, cp, c_ / f))
print("  vitale.read / carte read --backend pcsc    %.2f" % (r / c_))
PY
