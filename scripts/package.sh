#!/usr/bin/env bash
# Builds the Debian package of CarteKit and a .tar.gz of the same tree, for machines without Swift:
#   scripts/package.sh [--out DIR] [--no-lintian]
# → DIR/cartekit_<version>_<arch>.deb and DIR/cartekit_<version>_<arch>.tar.gz (DIR: dist/).
#
# What goes where (docs/packaging.md): /usr/bin/carte (release, Swift runtime linked in),
# /usr/lib/pcsc/drivers/serial/libifdcarte.so (the pcscd driver), /usr/lib/<multiarch>/libcarte.so.1
# with /usr/include/carte.h and cartekit.pc, udev rules, man pages made from the commands' own help
# (swift-argument-parser's generate-manual plugin), bash/zsh/fish completions, the cartekit-sim
# service with /etc/cartekit/simulator.conf. Depends: computed by dpkg-shlibdeps from the binaries.
# The package is checked with lintian (errors fail the build; the warnings left are explained in
# docs/packaging.md). Prints the paths, sizes and the time it took on standard error.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
out=dist
lintian=yes
while (($#)); do
    case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --no-lintian) lintian=no; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package: unknown argument '$1' (scripts/package.sh --help)" >&2; exit 64 ;;
    esac
done
say() { printf 'package: %s\n' "$*" >&2; }

bash scripts/bootstrap.sh
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
export CARTEKIT_BUILD_COMMIT="$(bash scripts/build-commit.sh)"
version=$(sed -n 's/^ *static let string = "\([0-9][0-9A-Za-z.+~-]*\)"$/\1/p' Sources/carte/Carte.swift)
[ -n "$version" ] || { say "error: no version in Sources/carte/Carte.swift (CarteVersion.string)"; exit 1; }
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
# Reproducible dates: the commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
day=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
name="cartekit_${version}_${arch}"
say "building $name (commit ${CARTEKIT_BUILD_COMMIT:-unknown})"

# 1. Release build: the manual plugin builds every product in release. A release carte links the Swift
#    runtime and Foundation in (Package.swift: staticSwiftRuntime), as libcarte.so and libifdcarte.so always do.
quiet() { grep -v "warning: 'main'\|prohibited flag\|mktemp\|unhandled; explicitly declare\|CMakeLists.txt$" >&2 || true; }
rm -rf .build/plugins/GenerateManual/outputs/carte   # no page of a command that is gone
set +o pipefail
swift package plugin generate-manual --configuration release --multi-page --date "$day" --authors "CarteKit developers" 2>&1 | quiet
built=${PIPESTATUS[0]}
set -o pipefail
[ "$built" -eq 0 ] || { say "error: the release build (generate-manual plugin) failed ($built)"; exit 1; }
bin=$(swift build -c release --show-bin-path)
manuals=.build/plugins/GenerateManual/outputs/carte
for f in "$bin/carte" "$bin/libifdcarte.so" "$bin/libCarteC.so" "$manuals/carte.1"; do
    [ -f "$f" ] || { say "error: $f was not built"; exit 1; }
done
if ldd "$bin/carte" | grep -q "swift\|Foundation"; then
    say "error: $bin/carte still needs a Swift library: $(ldd "$bin/carte" | grep "swift\|Foundation" | tr -s ' \t' ' ')"
    exit 1
fi

# 2. The tree.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/$name"
doc="$root/usr/share/doc/cartekit"
install -d "$root/usr/bin" "$root/usr/lib/pcsc/drivers/serial" "$root/usr/lib/$multiarch/pkgconfig" "$root/usr/include" \
    "$root/usr/lib/cartekit" "$root/lib/udev/rules.d" "$root/lib/systemd/system" "$root/etc/cartekit/images" \
    "$root/etc/cartekit/profiles" "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" "$doc/examples"
install -m 0755 "$bin/carte" "$root/usr/bin/carte"
install -m 0644 "$bin/libifdcarte.so" "$root/usr/lib/pcsc/drivers/serial/libifdcarte.so"
install -m 0644 "$bin/libCarteC.so" "$root/usr/lib/$multiarch/libcarte.so.1"
ln -s libcarte.so.1 "$root/usr/lib/$multiarch/libcarte.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/carte" \
    "$root/usr/lib/pcsc/drivers/serial/libifdcarte.so" "$root/usr/lib/$multiarch/libcarte.so.1"
install -m 0644 Sources/CCarteAPI/include/carte.h "$root/usr/include/carte.h"
cat > "$root/usr/lib/$multiarch/pkgconfig/cartekit.pc" <<PC
prefix=/usr
libdir=\${prefix}/lib/$multiarch
includedir=\${prefix}/include

Name: cartekit
Description: CarteKit C API: Carte Vitale and CPx cards through PC/SC or virtual readers
Version: $version
Libs: -lcarte
Cflags:
PC
install -m 0644 udev/92-cartekit-readers.rules "$root/lib/udev/rules.d/92-cartekit-readers.rules"
install -m 0644 packaging/systemd/cartekit-sim.service "$root/lib/systemd/system/cartekit-sim.service"
install -m 0755 packaging/cartekit-sim-service packaging/cartekit-container "$root/usr/lib/cartekit/"
install -m 0644 packaging/simulator.conf "$root/etc/cartekit/simulator.conf"
# User units (the browser agent's, once it exists) go in packaging/systemd/user/.
if compgen -G "packaging/systemd/user/*.service" >/dev/null; then
    install -d "$root/usr/lib/systemd/user"
    install -m 0644 packaging/systemd/user/*.service "$root/usr/lib/systemd/user/"
fi

# Man pages: one per command, named the usual way (carte-sim-serve(1)), cross-references to match.
for page in "$manuals"/carte*.1; do
    base=$(basename "$page" .1)
    [ "$base" = carte.help ] && continue          # ArgumentParser's `help` command: carte(1) covers it
    target=${base//./-}
    perl packaging/manpage.pl < "$page" | gzip -9n > "$root/usr/share/man/man1/$target.1.gz"
done
# Completions, from the tool itself.
# (bash-completion sources its files: no #! line)
"$root/usr/bin/carte" --generate-completion-script bash | sed '1{/^#!/d}' > "$root/usr/share/bash-completion/completions/carte"
"$root/usr/bin/carte" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_carte"
"$root/usr/bin/carte" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/carte.fish"
# Documentation.
install -m 0644 packaging/debian/copyright "$doc/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/cartekit"
gzip -9n < packaging/debian/changelog > "$doc/changelog.gz"
for f in README.md docs/*.md CardImages/README.md; do
    dest=$(basename "$f")
    [ "$f" = CardImages/README.md ] && dest=card-images.md
    gzip -9n < "$f" > "$doc/$dest.gz"
done
install -m 0644 examples/c/read_card.c "$doc/examples/read_card.c"
chmod -R u=rwX,go=rX "$root"
chmod 0755 "$root/usr/bin/carte" "$root/usr/lib/cartekit/cartekit-sim-service" "$root/usr/lib/cartekit/cartekit-container"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# The units, checked by systemd itself (their programs' paths pointed into the tree; any remark fails).
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$work/verify/user"
    point() { sed -e "s|/usr/lib/cartekit/|$root/usr/lib/cartekit/|g" -e "s|/usr/bin/carte |$root/usr/bin/carte |g" "$1"; }
    point packaging/systemd/cartekit-sim.service > "$work/verify/cartekit-sim.service"
    remarks=$(systemd-analyze verify --man=no "$work/verify/cartekit-sim.service" 2>&1) || true
    for unit in packaging/systemd/user/*.service; do
        [ -e "$unit" ] || continue
        point "$unit" > "$work/verify/user/$(basename "$unit")"
        mkdir -p "$work/verify/run"
        remarks+=$(XDG_RUNTIME_DIR="$work/verify/run" systemd-analyze --user verify --man=no "$work/verify/user/$(basename "$unit")" 2>&1) || true
    done
    [ -z "$remarks" ] || { say "error: systemd-analyze verify: $remarks"; exit 1; }
fi

# 3. Control files.
install -d "$root/DEBIAN"
shlibwork="$work/shlibdeps"
mkdir -p "$shlibwork/debian"
printf 'Source: cartekit\n\nPackage: cartekit\nArchitecture: any\n' > "$shlibwork/debian/control"
depends=$(cd "$shlibwork" && dpkg-shlibdeps -O -xcartekit -e"$root/usr/bin/carte" -e"$root/usr/lib/$multiarch/libcarte.so.1" \
    -e"$root/usr/lib/pcsc/drivers/serial/libifdcarte.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { say "error: dpkg-shlibdeps found no dependency"; exit 1; }
# libpcsclite is loaded at run time (dlopen of libpcsclite.so.1, docs/platforms.md), so no binary names it
# and dpkg-shlibdeps cannot see it: it is declared here.
case "$depends" in *libpcsclite1*) ;; *) depends="$depends, libpcsclite1 (>= 1.9.9)" ;; esac
size=$(du -sk --apparent-size "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    packaging/debian/control.in > "$root/DEBIAN/control"
sed -e "s/@VERSION@/$version/" packaging/debian/shlibs.in > "$root/DEBIAN/shlibs"
install -m 0644 packaging/debian/conffiles packaging/debian/triggers "$root/DEBIAN/"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control" "$root/DEBIAN/shlibs"

# 4. The .deb and the .tar.gz of the same tree.
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/$name.deb" >/dev/null
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --exclude=./DEBIAN \
    -C "$root" -czf "$out/$name.tar.gz" .

if [ "$lintian" = yes ]; then
    # Errors fail; warnings are listed (docs/packaging.md explains each one left).
    if ! lintian --fail-on error --no-tag-display-limit "$out/$name.deb" >&2; then
        say "error: lintian reports errors on $out/$name.deb"
        exit 1
    fi
fi
say "depends: $depends"
say "$out/$name.deb: $(du -k "$out/$name.deb" | cut -f1) KiB; installed: $size KiB; $(($(date +%s) - started)) s"
printf '%s\n' "$out/$name.deb"
