# Sourced by scripts/cryptolib-record.sh and scripts/cryptolib-bench.sh: one virtual mono-fente reader
# served by `carte sim serve` behind a private pcscd (its own mount namespace, tmpfs over /run/pcscd,
# the machine's USB reader drivers hidden) logging every APDU. Needs BIN (carte's directory) and WORK.
SIM=""; PCSCD=""

# vr_start IMAGE: the reader holding IMAGE; exports PCSCLITE_CSOCK_NAME for the clients. pcscd's log
# is $WORK/run/pcscd.log.
vr_start() {
  local image="$1" d="$WORK/run"
  rm -rf "$d"; mkdir -p "$d/conf"
  "$BIN/carte" sim serve --socket "$d/sim.sock" --profile mono-fente --image "CarteKit Virtual Mono-fente 00 00=$image" >"$d/sim.log" 2>&1 &
  SIM=$!
  for _ in $(seq 100); do [ -S "$d/sim.sock" ] && break; sleep 0.05; done
  "$BIN/carte" sim reader-conf --socket "$d/sim.sock" --out "$d/conf" >/dev/null
  unshare --mount --propagation private sh -c "for b in /usr/lib/pcsc/drivers/*.bundle; do [ -d \"\$b\" ] && mount -t tmpfs -o ro tmpfs \"\$b\"; done; mkdir -p /run/pcscd && mount -t tmpfs -o mode=0755 tmpfs /run/pcscd && exec pcscd --foreground --debug --apdu -c '$d/conf'" >"$d/pcscd.log" 2>&1 &
  PCSCD=$!
  for _ in $(seq 200); do [ -S "/proc/$PCSCD/root/run/pcscd/pcscd.comm" ] && break; sleep 0.05; done
  export PCSCLITE_CSOCK_NAME="/proc/$PCSCD/root/run/pcscd/pcscd.comm"
}

# vr_stop: stops the pcscd and the daemon vr_start started (by PID).
vr_stop() {
  [ -n "$PCSCD" ] && kill "$PCSCD" 2>/dev/null || true
  [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
  wait 2>/dev/null || true
  PCSCD=""; SIM=""
}
