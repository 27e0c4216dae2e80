#!/usr/bin/env bash
# Installs libcarte (the C API) into PREFIX: PREFIX/lib/libcarte.so.1 (+ libcarte.so), PREFIX/include/carte.h,
# PREFIX/lib/pkgconfig/cartekit.pc (the Debian package's name; carte.pc, the earlier one, links to it).
#   scripts/install-capi.sh PREFIX              # release build, then install
#   scripts/install-capi.sh PREFIX BUILD_DIR    # install what BUILD_DIR holds (tests: the debug build)
# The library is stripped of its debug information (valgrind 3.19 cannot read Swift 6's DWARF 5).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: scripts/install-capi.sh PREFIX [BUILD_DIR]}"
build="${2:-}"
if [ -z "$build" ]; then
    bash scripts/bootstrap.sh
    command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
    set +o pipefail
    swift build -c release --product CarteC 2>&1 | grep -v "prohibited flag\|mktemp" >&2
    built=${PIPESTATUS[0]}
    set -o pipefail
    [ "$built" -eq 0 ] || { echo "install-capi: swift build failed ($built)" >&2; exit 1; }
    build="$(swift build -c release --show-bin-path)"
fi
[ -f "$build/libCarteC.so" ] || { echo "install-capi: $build/libCarteC.so is not built (swift build --product CarteC)" >&2; exit 1; }
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
cp "$build/libCarteC.so" "$prefix/lib/libcarte.so.1.tmp"
strip --strip-debug "$prefix/lib/libcarte.so.1.tmp"
mv "$prefix/lib/libcarte.so.1.tmp" "$prefix/lib/libcarte.so.1"
ln -sf libcarte.so.1 "$prefix/lib/libcarte.so"
cp Sources/CCarteAPI/include/carte.h "$prefix/include/carte.h"
cat > "$prefix/lib/pkgconfig/cartekit.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: cartekit
Description: CarteKit C API: Carte Vitale and CPx cards through PC/SC or virtual readers
Version: 0.1.0
Requires.private: openssl
Libs: -L\${libdir} -lcarte
Cflags: -I\${includedir}
PC
ln -sf cartekit.pc "$prefix/lib/pkgconfig/carte.pc"
echo "installed libcarte into $prefix (cc … -I$prefix/include -L$prefix/lib -lcarte -Wl,-rpath,$prefix/lib)" >&2
