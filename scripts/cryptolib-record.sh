#!/usr/bin/env bash
# Records the APDU conversations the official ANS Cryptolib CPS has with CarteKit's virtual CPS3 and
# CPS4, one file per operation, into Tests/CarteCPSTests/Fixtures/cryptolib/ (docs/pkcs11.md).
#
#   CRYPTOLIB=/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so scripts/cryptolib-record.sh [OUT_DIR]
#
# Needs root (a private pcscd in its own mount namespace, as the tests start it), OpenSC's pkcs11-tool
# and the Cryptolib for Linux installed by hand from its RPM (ansforge/dops-cryptolib, Linux/5.2.x:
# `rpm2cpio CryptolibCPS-5.2.2-1.x86_64.rpm | cpio -idm`, then copy opt/ and etc/ under /). The
# Cryptolib is not a Debian package and no part of it enters this repository: only the conversations
# (data) do. The suite replays them against the emulator (CryptolibConversationTests).
#
# Each operation runs on a fresh card (a new simulator, a new pcscd) with the Cryptolib's file cache
# for that card's serial emptied, so every conversation starts from the card's first SELECT.
set -euo pipefail
cd "$(dirname "$0")/.."
CRYPTOLIB="${CRYPTOLIB:-/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so}"
OUT="${1:-Tests/CarteCPSTests/Fixtures/cryptolib}"
CACHE=/etc/opt/santesocial/CPS/cache
say() { printf 'cryptolib-record: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (a private pcscd in its own mount namespace)"; exit 1; }
[ -f "$CRYPTOLIB" ] || { say "no Cryptolib at $CRYPTOLIB (set CRYPTOLIB=…/libcps3_pkcs11_lux.so)"; exit 1; }
command -v pkcs11-tool >/dev/null || { say "pkcs11-tool missing (Debian package opensc)"; exit 1; }
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
swift build --product carte >&2
swift build --product ifdcarte >&2
BIN="$(swift build --show-bin-path)"
# The module's own version string ("version : 03.01.00 (OpenSC 0.11.12)" for the Cryptolib 5.2.2);
# CRYPTOLIB_RELEASE names the package it came from.
VERSION="$(strings "$CRYPTOLIB" | grep -o 'version : [0-9.]* (OpenSC [0-9.]*)' | head -1 | sed 's/version : /version /' || true)"
VERSION="${VERSION:-version unknown}"
RELEASE="${CRYPTOLIB_RELEASE:-5.2.2 (CryptolibCPS-5.2.2-1.x86_64.rpm)}"
P11VERSION="OpenSC pkcs11-tool $(dpkg-query -W -f '${Version}' opensc 2>/dev/null || echo '(version unknown)')"
WORK="$(mktemp -d)"
# shellcheck source=scripts/private-pcscd.sh
. scripts/private-pcscd.sh
cleanup() {
  vr_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

p11() { timeout 120 pkcs11-tool --module "$CRYPTOLIB" "$@"; }

# record NAME IMAGE SERIAL OPERATION VERIFY MESSAGE_FILE -- STEP...
# Each STEP is one pkcs11-tool invocation (arguments separated by spaces; @MSG is the message file,
# @OUT the output file). The conversation is every APDU and answer pcscd saw, with the card resets.
record() {
  local name="$1" image="$2" serial="$3" operation="$4" verify="$5" message="$6"; shift 7
  local steps=("$@")
  rm -f "$CACHE/${serial}_"* 2>/dev/null || true
  vr_start "$image"
  local results=() step
  for step in "${steps[@]}"; do
    # shellcheck disable=SC2086
    set -- ${step//@MSG/$message}
    local args=("${@//@OUT/$WORK/out}")
    if p11 "${args[@]}" >"$WORK/step.log" 2>&1; then results+=("ok"); else results+=("$(grep -m1 -o 'CKR_[A-Z_]*' "$WORK/step.log" || echo failed)"); fi
  done
  vr_stop
  {
    echo "# carte-conversation/1"
    echo "# client: ANS Cryptolib CPS $RELEASE for Linux, libcps3_pkcs11_lux.so $VERSION, driven by $P11VERSION"
    echo "# image: $image"
    echo "# operation: $operation"
    local i=0
    for step in "${steps[@]}"; do
      echo "# step: pkcs11-tool $(printf '%s' "$step" | sed -E 's/(--(so-|new-)?pin) [0-9]+/\1 <test code>/g') -> ${results[$i]}"
      i=$((i + 1))
    done
    [ -n "$verify" ] && echo "# verify: $verify"
    [ -n "$message" ] && echo "# message: $(xxd -p "$message" | tr -d '\n')"
    echo "# recorded: $(date -u +%Y-%m-%d) with scripts/cryptolib-record.sh"
    # pcscd's log: APDU and SW lines, and the card resets between connections.
    # "Card ATR:" is logged at each power-up; a disconnection that resets or unpowers the card, too.
    sed -E 's/^[0-9]+ //' "$WORK/run/pcscd.log" | grep -E '^APDU: |^SW: |^Card ATR: |dwDisposition: [123]' \
      | sed -E 's/^.*dwDisposition: [123].*$/reset/; s/^Card ATR: .*$/reset/; s/ +$//'
  } >"$OUT/$name.conversation"
  say "$name: ${results[*]}"
}

MSG="$WORK/message"; printf 'Ordonnance CarteKit (synthetic) 2026-12-07\n' >"$MSG"
BIG="$WORK/big"; for i in $(seq 40); do printf 'Compte rendu synthetique, ligne %02d, CarteKit.\n' "$i"; done >"$BIG"
DI="$WORK/digestinfo"; { printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20'; openssl dgst -sha256 -binary "$MSG"; } >"$DI"

for card in cps3:bundled:cps/medecin-liberal.yaml:99000101 cps4:bundled:cps/cps4-medecin.yaml:99000808; do
  g="${card%%:*}"; rest="${card#*:}"; serial="${rest##*:}"; image="${rest%:*}"
  record "$g-list" "$image" "$serial" "list the token and its public objects" "" "" -- "-L" "-O"
  record "$g-login-objects" "$image" "$serial" "log in, list every object, read a protected situation" "" "" -- \
    "--login --pin 1234 -O" "--login --pin 1234 --read-object --type data --label CPS_ACTIVITY_01_PS -o @OUT"
  record "$g-sign-sha256" "$image" "$serial" "SHA256-RSA-PKCS with the signature key" "key=02 mechanism=SHA256-RSA-PKCS" "$BIG" -- \
    "--login --pin 1234 --sign --id 02 -m SHA256-RSA-PKCS -i @MSG -o @OUT"
  record "$g-sign-sha1" "$image" "$serial" "SHA1-RSA-PKCS with the signature key" "key=02 mechanism=SHA1-RSA-PKCS" "$MSG" -- \
    "--login --pin 1234 --sign --id 02 -m SHA1-RSA-PKCS -i @MSG -o @OUT"
  record "$g-sign-rsa-pkcs" "$image" "$serial" "RSA-PKCS on a SHA-256 DigestInfo with the signature key" "key=02 mechanism=RSA-PKCS" "$DI" -- \
    "--login --pin 1234 --sign --id 02 -m RSA-PKCS -i @MSG -o @OUT"
  # The cryptogram is made for the card's own authentication certificate (read once, not recorded).
  vr_start "$image"; p11 --read-object --type cert --id 01 -o "$WORK/c1.der" >/dev/null 2>&1; vr_stop
  openssl x509 -inform der -in "$WORK/c1.der" -pubkey -noout >"$WORK/k1.pem"
  openssl rand 32 >"$WORK/secret"; openssl pkeyutl -encrypt -pubin -inkey "$WORK/k1.pem" -in "$WORK/secret" -out "$WORK/cryptogram"
  record "$g-decrypt" "$image" "$serial" "RSA-PKCS deciphering with the authentication key" "key=01 mechanism=RSA-PKCS-DECRYPT plaintext=$(xxd -p "$WORK/secret" | tr -d '\n')" "$WORK/cryptogram" -- \
    "--login --pin 1234 --decrypt --id 01 -m RSA-PKCS -i @MSG -o @OUT"
  record "$g-wrong-pin" "$image" "$serial" "a wrong PIN (CKR_PIN_INCORRECT, tries left)" "" "" -- "--login --pin 9999 -O" "-T"
  record "$g-change-pin" "$image" "$serial" "change the PIN and log in with the new one" "" "" -- \
    "--change-pin --pin 1234 --new-pin 4321" "--login --pin 4321 -O"
  record "$g-block-unblock" "$image" "$serial" "block the PIN, unblock it with the PUK (C_Login SO + C_InitPIN), log in" "" "" -- \
    "--login --pin 0000 -O" "--login --pin 0000 -O" "--login --pin 0000 -O" "-T" \
    "--login --login-type so --so-pin 12345678 --init-pin --pin 1234" "--login --pin 1234 -O"
done
record "cps3-sign-rsa-pkcs-auth" bundled:cps/medecin-liberal.yaml 99000101 "RSA-PKCS on a DigestInfo with the authentication key (INTERNAL AUTHENTICATE)" "key=01 mechanism=RSA-PKCS" "$DI" -- \
  "--login --pin 1234 --sign --id 01 -m RSA-PKCS -i @MSG -o @OUT"
record "cps3-blocked" bundled:cps/pin-bloque.yaml 99000606 "a blocked card (CKR_PIN_LOCKED)" "" "" -- "-T" "--login --pin 1234 -O"
for m in SHA256-RSA-PKCS-PSS SHA1-RSA-PKCS-PSS; do
  for id in 02 01; do
    lower="$(echo "$m" | tr 'A-Z' 'a-z')"
    record "cps4-sign-$lower-key$id" bundled:cps/cps4-medecin.yaml 99000808 "$m with key $id" "key=$id mechanism=$m" "$MSG" -- \
      "--login --pin 1234 --sign --id $id -m $m -i @MSG -o @OUT"
  done
done
say "conversations written to $OUT"
