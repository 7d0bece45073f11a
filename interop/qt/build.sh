#!/usr/bin/env bash
# Builds the Qt peer programs for localsock/tests/qt_interop/.
#
#   bash interop/qt/build.sh OUT_DIR
#
# Uses g++ and pkg-config: Qt6Network when present (needed for the abstract-namespace tests,
# Qt >= 6.2), else Qt5Network. Qt is built with -reduce-relocations, so code using it must be
# position independent: -fPIC. Writes OUT_DIR/qtpeer; rebuilds only when the source changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"

if pkg-config --exists Qt6Network; then
    qt=Qt6Network
elif pkg-config --exists Qt5Network; then
    qt=Qt5Network
    echo "build.sh: Qt 6 not found, using Qt 5 ($(pkg-config --modversion Qt5Network)):" \
        "the abstract-namespace tests need Qt >= 6.2 and will fail" >&2
else
    echo "build.sh: neither Qt6Network nor Qt5Network is known to pkg-config;" \
        "install qt6-base-dev (Debian) or run ci/qt.sh" >&2
    exit 1
fi
CXX=${CXX:-g++}
flags=(-std=c++17 -O2 -g -fPIC -Wall -Wextra -Werror)

src="$here/qtpeer.cpp"
bin="$out/qtpeer"
if [[ -x "$bin" && "$bin" -nt "$src" && "$bin" -nt "$0" ]]; then
    echo "build.sh: $bin is up to date ($qt $(pkg-config --modversion "$qt"))"
    exit 0
fi
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
"$CXX" "${flags[@]}" $(pkg-config --cflags "$qt") "$src" -o "$bin.tmp" $(pkg-config --libs "$qt")
mv -f "$bin.tmp" "$bin"
echo "build.sh: built $bin with $qt $(pkg-config --modversion "$qt")"
