#!/usr/bin/env bash
# One signature per card and per PKCS#11 client, through pcscd: APDUs and median time, with one SELECT
# round trip on the same path as the reference (docs/pkcs11.md, "Measured").
#
#   CRYPTOLIB=/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so scripts/cryptolib-bench.sh [SIGNATURES]
#
# Root only (a private pcscd in its own mount namespace). Clients: the ANS Cryptolib (installed by hand
# from its RPM, see scripts/cryptolib-record.sh; skipped with the reason when absent) and OpenSC's
# opensc-pkcs11.so (CPS3 only: it has no CPS4 driver, and it refuses SHA256-RSA-PKCS on IAS-ECC, so it
# signs a DigestInfo with RSA-PKCS), both driven by PyKCS11 (Debian's python3-pykcs11) with the module
# loaded once, logged in once; the reference is pyscard's SELECT of the card's application. CarteKit's
# own figures come from `carte bench cps`, run at the end of the same script.
set -euo pipefail
cd "$(dirname "$0")/.."
CRYPTOLIB="${CRYPTOLIB:-/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so}"
OPENSC=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
N="${1:-50}"
say() { printf 'cryptolib-bench: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (a private pcscd in its own mount namespace)"; exit 1; }
if ! /usr/bin/python3 -c 'import PyKCS11, smartcard' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pykcs11 python3-pyscard >/dev/null
fi
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product carte >&2
swift build -c release --product ifdcarte >&2
BIN="$(swift build -c release --show-bin-path)"
WORK="$(mktemp -d)"
# shellcheck source=scripts/private-pcscd.sh
. scripts/private-pcscd.sh
cleanup() {
  vr_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/bench.py" <<'PY'
import statistics, sys, time
import PyKCS11
from smartcard.System import readers

module, mechanism, key_id, n, log, aid_select = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]

def apdus():
    with open(log, errors="replace") as f:
        return sum(1 for line in f if "APDU: " in line)

if module == "select":
    # The reference: the same SELECT the client sends, round trips through the same pcscd.
    connection = readers()[0].createConnection()
    connection.connect()
    command = list(bytes.fromhex(aid_select))
    times = []
    for _ in range(n + 5):
        start = time.perf_counter()
        connection.transmit(command)
        times.append(time.perf_counter() - start)
    connection.disconnect()
    print(f"{statistics.median(times[5:]) * 1000:.3f} ms 1")
    sys.exit(0)

lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login("1234")
key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, bytes.fromhex(key_id))])[0]
message = b"Ordonnance CarteKit (synthetic)"
if mechanism == "RSA-PKCS":
    import hashlib
    data = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
    m = PyKCS11.Mechanism(PyKCS11.CKM_RSA_PKCS)
else:
    data = message
    m = PyKCS11.Mechanism({"SHA256-RSA-PKCS": PyKCS11.CKM_SHA256_RSA_PKCS, "SHA1-RSA-PKCS": PyKCS11.CKM_SHA1_RSA_PKCS}[mechanism])
for _ in range(3):
    session.sign(key, data, m)
times, counts = [], []
for _ in range(n):
    time.sleep(0.002)
    before = apdus()
    start = time.perf_counter()
    session.sign(key, data, m)
    times.append(time.perf_counter() - start)
    time.sleep(0.05)  # pcscd's log is written after the answer
    counts.append(apdus() - before)
session.logout()
session.closeSession()
print(f"{statistics.median(times) * 1000:.3f} ms {statistics.median(counts):.0f}")
PY

row() {  # CARD CLIENT MODULE MECHANISM KEY SELECT
  local out
  if out="$(/usr/bin/python3 "$WORK/bench.py" "$3" "$4" "$5" "$N" "$WORK/run/pcscd.log" "$6" 2>&1)"; then
    set -- "$1" "$2" "$4" "$5" $out
    printf '%-5s %-28s %-16s key %s: %s APDUs, median %s ms = %s x one SELECT round trip\n' "$1" "$2" "$3" "$4" "$7" "$5" \
      "$(awk -v a="$5" -v b="$REF" 'BEGIN { printf "%.1f", a / b }')"
  else
    printf '%-5s %-28s %-16s key %s: failed: %s\n' "$1" "$2" "$4" "$5" "$(echo "$out" | tail -1)"
  fi
}

echo "One signature per card and client through a private pcscd ($N signatures each, medians)"
for card in "cps3:bundled:cps/medecin-liberal.yaml:00A4040C0DE828BD080F8025000001FF0010" "cps4:bundled:cps/cps4-medecin.yaml:01A4040C088025000001FF0100"; do
  g="${card%%:*}"; rest="${card#*:}"; select="${rest##*:}"; image="${rest%:*}"; select="${select// /}"
  vr_start "$image"
  ref="$(/usr/bin/python3 "$WORK/bench.py" select - - "$N" "$WORK/run/pcscd.log" "$select")"
  REF="${ref%% ms*}"
  printf '%-5s %-28s one SELECT round trip: median %s ms\n' "$g" "reference (pyscard)" "$REF"
  if [ -f "$CRYPTOLIB" ]; then
    rm -f /etc/opt/santesocial/CPS/cache/990001* /etc/opt/santesocial/CPS/cache/990008* 2>/dev/null || true
    for m in SHA256-RSA-PKCS SHA1-RSA-PKCS RSA-PKCS; do row "$g" "ANS Cryptolib" "$CRYPTOLIB" "$m" 02 "$select"; done
  else
    echo "$g   ANS Cryptolib: not measured: no $CRYPTOLIB"
  fi
  if [ "$g" = cps3 ]; then row "$g" "OpenSC 0.23 (opensc-pkcs11)" "$OPENSC" RSA-PKCS 02 "$select"; fi
  vr_stop
done
echo
echo "CarteKit (carte bench cps, release build, same machine, same run):"
"$BIN/carte" bench cps --reads 20 --signatures "$N" | grep -E "^bundled|in memory|through pcscd|signature:"
