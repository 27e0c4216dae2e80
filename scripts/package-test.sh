#!/usr/bin/env bash
# The proof of the Debian package (docs/packaging.md): builds it (scripts/package.sh), makes a clean
# Debian 12 root without Swift (debootstrap into .build-cleanroot/, the host untouched), installs the
# .deb there with apt, and checks, inside that root: carte --version, carte doctor without pcscd (exit 7),
# carte read on the embedded default, the simulator service's own steps with that root's pcscd,
# opensc-tool -l and carte read --backend pcsc seeing the virtual readers, the C example built with
# pkg-config and run through pcscd, man carte, then apt purge leaving no file of ours behind.
#   scripts/package-test.sh [--deb FILE]    (--deb: test that package instead of building one)
# Root only (chroot, mount namespaces). Every check prints "ok" or "FAIL: why"; exit 1 if one failed.
# The root's processes (pcscd, the daemon) live in a PID namespace of their own and end with it.
set -euo pipefail
shopt -s lastpipe   # `… | check` runs check in this shell: its verdict counts
cd "$(dirname "$0")/.."
started=$(date +%s)
deb=
while (($#)); do
    case "$1" in
    --deb) deb=${2:?--deb needs a file}; shift 2 ;;
    *) echo "package-test: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "package-test: needs root (debootstrap, chroot, mount namespaces)" >&2; exit 1; }
say() { printf 'package-test: %s\n' "$*" >&2; }

if [ -z "$deb" ]; then
    t0=$(date +%s)
    deb=$(bash scripts/package.sh --out dist)
    package_seconds=$(($(date +%s) - t0))
    say "package.sh: $package_seconds s"
fi
[ -f "$deb" ] || { say "error: no package $deb"; exit 1; }
commit=$(bash scripts/build-commit.sh)

# A pristine minbase root, made once and kept as a tarball (CI makes it each run: about 2 minutes).
cache=.build-cleanroot
mkdir -p "$cache"
pristine="$cache/bookworm-minbase.tar"
# The mirror and proxy this machine's apt uses (debootstrap reads neither from apt's configuration).
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\) bookworm main.*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
proxy=$(apt-config shell p Acquire::http::Proxy 2>/dev/null | sed -n "s/^p='\(.*\)'$/\1/p")
[ -n "$proxy" ] && export http_proxy="$proxy"
if [ ! -f "$pristine" ]; then
    t0=$(date +%s)
    rm -rf "$cache/debootstrap"
    debootstrap --variant=minbase bookworm "$cache/debootstrap" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { say "error: debootstrap failed (network? see $cache/debootstrap.log)"; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
    tar -C "$cache/debootstrap" -cf "$pristine.tmp" . && mv "$pristine.tmp" "$pristine"
    rm -rf "$cache/debootstrap"
    say "debootstrap: $(($(date +%s) - t0)) s"
fi
root="$cache/root"
# The root's mounts live in the namespaces of inroot only; never delete through a mount that leaked.
remove_root() {
    if grep -q " $(realpath -m "$root")/" /proc/mounts; then
        say "error: something is still mounted under $root; not deleting it"
        return 1
    fi
    rm -rf "$root"
}
remove_root
mkdir -p "$root"
tar -C "$root" -xf "$pristine"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The root's apt goes the way the host's does (its proxy, if any).
[ -n "$proxy" ] && printf 'Acquire::http::Proxy "%s";\n' "$proxy" > "$root/etc/apt/apt.conf.d/01proxy"
cp "$deb" "$root/tmp/cartekit.deb"
cp examples/c/read_card.c "$root/tmp/read_card.c"

# Runs a bash script (standard input) inside the root: its own mount and PID namespaces, /proc, /dev
# and a fresh /run; every process it starts ends with it.
inroot() {
    unshare --mount --propagation private --pid --fork sh -c '
        set -e
        root=$1
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/run"
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb /bin/bash -s
    ' inroot "$root"
}

failed=0
check() {  # check NAME CONDITION-OUTPUT: lines "ok NAME" / "FAIL NAME: why" from the root
    while IFS= read -r line; do
        case "$line" in
        "ok "*) printf 'package-test: %s\n' "$line" >&2 ;;
        "FAIL "*) printf 'package-test: %s\n' "$line" >&2; failed=1 ;;
        "time "*) printf 'package-test: %s\n' "$line" >&2 ;;
        *) ;;
        esac
    done
}

# 1. Install: apt resolves the dependencies; nothing of Swift in the root before or after.
inroot <<'ROOT' | check
set -u
ok() { echo "ok $*"; }
fail() { echo "FAIL $*"; }
export DEBIAN_FRONTEND=noninteractive
if command -v swift >/dev/null || find / -xdev -name 'libswiftCore*' 2>/dev/null | grep -q .; then fail "no Swift before install: found one"; else ok "no Swift toolchain or runtime in the clean root"; fi
apt-get update -qq >/tmp/apt.log 2>&1 || { fail "apt-get update: $(tail -1 /tmp/apt.log)"; exit 0; }
t0=$(date +%s%N)
if apt-get install -y -qq /tmp/cartekit.deb >/tmp/apt.log 2>&1; then ok "apt-get install ./cartekit.deb (dependencies resolved)"; else fail "apt-get install: $(tail -3 /tmp/apt.log | tr '\n' ' ')"; exit 0; fi
t1=$(date +%s%N)
echo "time apt-install-ms $(( (t1 - t0) / 1000000 ))"
# The first read after the install, on the embedded default.
if carte read >/tmp/read.txt 2>&1; then ok "carte read on the embedded default (first read after apt install)"; else fail "carte read: $(tail -2 /tmp/read.txt | tr '\n' ' ')"; fi
t2=$(date +%s%N)
echo "time install-to-first-read-ms $(( (t2 - t0) / 1000000 ))"
grep -q "CLAIRE EXEMPLE" /tmp/read.txt && ok "the read names the demo Vitale's beneficiary" || fail "carte read printed no beneficiary: $(head -3 /tmp/read.txt | tr '\n' ' ')"
for p in libpcsclite1 libssl3 libusb-1.0-0 pcscd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && ok "dependency $p installed" || fail "dependency $p not installed"
done
if find / -xdev -name 'libswiftCore*' 2>/dev/null | grep -q .; then fail "a Swift runtime was installed"; else ok "no Swift runtime installed by the package"; fi
for b in /usr/bin/carte /usr/lib/x86_64-linux-gnu/libcarte.so.1 /usr/lib/pcsc/drivers/serial/libifdcarte.so; do
    if ldd "$b" | grep -q "not found"; then fail "ldd $b: $(ldd "$b" | grep 'not found' | tr -s ' \t\n' ' ')"; else ok "ldd $b: every library found"; fi
done
ROOT

# 2. The tool, the service, pcscd, the clients, the C example, man.
inroot <<ROOT | check
set -u
ok() { echo "ok \$*"; }
fail() { echo "FAIL \$*"; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends opensc gcc libc6-dev pkg-config man-db procps >/tmp/apt2.log 2>&1 || fail "test tools: \$(tail -2 /tmp/apt2.log | tr '\n' ' ')"
v=\$(carte --version)
[ "\$v" = "0.1.0 (commit $commit)" ] && ok "carte --version: \$v" || fail "carte --version: '\$v', expected '0.1.0 (commit $commit)'"
carte doctor >/tmp/doctor.txt 2>&1; rc=\$?
[ \$rc -eq 7 ] && ok "carte doctor without pcscd: exit 7" || fail "carte doctor without pcscd: exit \$rc"
grep -qi "pcscd" /tmp/doctor.txt && grep -qi "not running\|does not answer" /tmp/doctor.txt && ok "carte doctor says pcscd is not there" || fail "carte doctor: \$(head -5 /tmp/doctor.txt | tr '\n' ' ')"
[ -f /usr/share/man/man1/carte.1.gz ] && man -w carte >/dev/null 2>&1 && ok "man carte: \$(man -w carte)" || fail "man carte: no page"
man -w carte-sim-serve >/dev/null 2>&1 && ok "man carte-sim-serve" || fail "man carte-sim-serve: no page"
MANWIDTH=80 man -l "\$(man -w carte)" 2>/dev/null | grep -q "carte-read(1)" && ok "carte(1) refers to carte-read(1)" || fail "carte(1) has no reference to carte-read(1)"

# The simulator service, by the steps its unit runs (no systemd in a chroot: pcscd is started here).
unit=/lib/systemd/system/cartekit-sim.service
start=\$(sed -n 's/^ExecStart=//p' \$unit); post=\$(sed -n 's/^ExecStartPost=//p' \$unit); stop=\$(sed -n 's/^ExecStopPost=//p' \$unit)
[ -n "\$start" ] && [ -n "\$post" ] && [ -n "\$stop" ] && ok "unit steps: \$start | \$post | \$stop" || fail "cartekit-sim.service lacks a step"
mkdir -p /run/cartekit
\$start >/tmp/sim.log 2>&1 &
sim=\$!
if \$post >/tmp/post.log 2>&1; then ok "ExecStartPost: reader.conf entries written"; else fail "ExecStartPost: \$(tail -2 /tmp/post.log | tr '\n' ' ')"; fi
grep -q "LIBPATH */usr/lib/pcsc/drivers/serial/libifdcarte.so" /etc/reader.conf.d/cartekit-readers 2>/dev/null && ok "/etc/reader.conf.d/cartekit-readers loads the installed driver" || fail "reader.conf entries: \$(cat /etc/reader.conf.d/cartekit-readers 2>&1 | head -3 | tr '\n' ' ')"
pcscd --foreground >/tmp/pcscd.log 2>&1 &
pcscd=\$!
for i in \$(seq 1 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
sleep 1
opensc-tool -l >/tmp/opensc.txt 2>&1
grep -q "CarteKit Virtual Bi-fente 00 00" /tmp/opensc.txt && grep -q "CarteKit Virtual Mono-fente" /tmp/opensc.txt && ok "opensc-tool -l lists the virtual readers" || fail "opensc-tool -l: \$(cat /tmp/opensc.txt | tr '\n' ' ')"
carte read --backend pcsc >/tmp/read-pcsc.txt 2>&1 && grep -q "CLAIRE EXEMPLE" /tmp/read-pcsc.txt && ok "carte read --backend pcsc reads the Vitale through pcscd" || fail "carte read --backend pcsc: \$(tail -3 /tmp/read-pcsc.txt | tr '\n' ' ')"
cd /tmp
if cc read_card.c \$(pkg-config --cflags --libs cartekit) -o read_card 2>/tmp/cc.log; then ok "cc read_card.c \\\$(pkg-config --cflags --libs cartekit)"; else fail "cc: \$(head -3 /tmp/cc.log | tr '\n' ' ')"; fi
echo 1234 | ./read_card --pin >/tmp/c.txt 2>/tmp/c.err; rc=\$?
[ \$rc -eq 0 ] && grep -q '"schema" : "carte.vitale/1"' /tmp/c.txt && grep -q '"schema" : "carte.cps/1"' /tmp/c.txt && ok "the C example reads the Vitale and the CPS through pcscd" || fail "read_card: exit \$rc \$(tail -3 /tmp/c.err | tr '\n' ' ')"
grep -q "signed: 256 bytes" /tmp/c.err && ok "the C example signs with the CPS" || fail "read_card did not sign: \$(tail -2 /tmp/c.err | tr '\n' ' ')"
kill \$sim; wait \$sim 2>/dev/null
if \$stop >/tmp/stop.log 2>&1 && [ ! -e /etc/reader.conf.d/cartekit-readers ]; then ok "ExecStopPost removes the reader.conf entries"; else fail "ExecStopPost: \$(tail -2 /tmp/stop.log | tr '\n' ' ')"; fi
[ ! -e /run/cartekit/sim.sock ] && ok "the daemon removed its socket on SIGTERM" || fail "the socket is left"
kill \$pcscd 2>/dev/null; wait \$pcscd 2>/dev/null
# The browser agent's user unit: its command serves on loopback and stops on SIGTERM.
agentunit=/usr/lib/systemd/user/cartekit-agent.service
agentstart=\$(sed -n 's/^ExecStart=//p' \$agentunit 2>/dev/null)
if [ -n "\$agentstart" ]; then
    HOME=/tmp/agent-home \$agentstart --backend simulator >/tmp/agent.out 2>/tmp/agent.err &
    agent=\$!
    for i in \$(seq 1 50); do grep -q listening /tmp/agent.out 2>/dev/null && break; sleep 0.1; done
    grep -q "listening on ws://127.0.0.1:9743/carte.agent/1" /tmp/agent.out && ok "the agent's user unit command listens on 127.0.0.1:9743" || fail "agent: \$(cat /tmp/agent.out /tmp/agent.err | tail -3 | tr '\n' ' ')"
    kill \$agent; wait \$agent; rc=\$?
    [ \$rc -eq 0 ] && ok "the agent stops cleanly on SIGTERM" || fail "the agent exited \$rc on SIGTERM"
    rm -rf /tmp/agent-home
else
    fail "no ExecStart in \$agentunit"
fi
# The maintainer scripts are idempotent: configure again, as dpkg may.
if dpkg-reconfigure cartekit >/tmp/reconf.log 2>&1 && sh /var/lib/dpkg/info/cartekit.postinst configure 0.1.0 >>/tmp/reconf.log 2>&1; then ok "postinst configure runs twice"; else fail "postinst again: \$(tail -2 /tmp/reconf.log | tr '\n' ' ')"; fi
true
ROOT

# 2b. The QA container's entry point, as a container would run it (its own PID namespace, no systemd):
#     pcscd and the daemon are its processes; the command reads through them; nothing is left after.
inroot <<'ROOT' | check
set -u
ok() { echo "ok $*"; }
fail() { echo "FAIL $*"; }
if /usr/lib/cartekit/cartekit-container carte read --backend pcsc >/tmp/container.txt 2>/tmp/container.err; then
    grep -q "CLAIRE EXEMPLE" /tmp/container.txt && ok "cartekit-container carte read --backend pcsc: the Vitale through the container's pcscd" || fail "container read printed: $(head -3 /tmp/container.txt | tr '\n' ' ')"
else
    fail "cartekit-container: $(tail -3 /tmp/container.err | tr '\n' ' ')"
fi
/usr/lib/cartekit/cartekit-container sh -c 'exit 3' 2>/dev/null; rc=$?
[ $rc -eq 3 ] && ok "cartekit-container exits with its command's status" || fail "cartekit-container exit $rc, expected 3"
left=$(ps -eo comm= | grep -E "^(pcscd|carte)$" | tr '\n' ' ')
[ -z "$left" ] && ok "no pcscd or daemon left after the container's command" || fail "left running: $left"
[ ! -e /run/cartekit/sim.sock ] && [ ! -e /etc/reader.conf.d/cartekit-readers ] && ok "socket and reader.conf entries removed" || fail "socket or reader.conf entries left"
ROOT

# 3. Purge: no file of ours left.
inroot <<'ROOT' | check
set -u
ok() { echo "ok $*"; }
fail() { echo "FAIL $*"; }
export DEBIAN_FRONTEND=noninteractive
dpkg -L cartekit > /tmp/files.txt
# What the service wrote at run time comes back once more, to see purge take it too.
mkdir -p /etc/reader.conf.d /run/cartekit && echo "# test" > /etc/reader.conf.d/cartekit-readers
apt-get purge -y -qq cartekit >/tmp/purge.log 2>&1 && ok "apt-get purge cartekit" || fail "purge: $(tail -2 /tmp/purge.log | tr '\n' ' ')"
left=""
while IFS= read -r f; do
    [ -d "$f" ] && continue   # directories (and /lib, a link to one) are shared with other packages
    if [ -f "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
done < /tmp/files.txt
[ -z "$left" ] && ok "every file of the package is gone" || fail "left behind:$left"
for d in /etc/cartekit /usr/lib/cartekit /usr/share/doc/cartekit /etc/reader.conf.d/cartekit-readers /var/lib/systemd/deb-systemd-helper-enabled/cartekit-sim.service.dsh-also; do
    [ ! -e "$d" ] && ok "gone: $d" || fail "left behind: $d"
done
stray=$(find / -xdev \( -path /tmp -o -path /proc \) -prune -o \( -iname '*cartekit*' -o -name 'libcarte*' -o -name 'carte' -o -name 'carte.*' -o -name '*ifdcarte*' \) -print 2>/dev/null | head -5)
[ -z "$stray" ] && ok "no file named after CarteKit anywhere" || fail "stray files: $stray"
dpkg-query -W -f='${Status}' cartekit 2>/dev/null | grep -q "installed" && fail "cartekit still known to dpkg" || ok "dpkg no longer knows cartekit"
ROOT

elapsed=$(($(date +%s) - started))
remove_root
say "deb: $(du -k "$deb" | cut -f1) KiB; clean-root test: $elapsed s in all"
if [ "$failed" -ne 0 ]; then
    say "FAILED"
    exit 1
fi
say "all checks passed"
