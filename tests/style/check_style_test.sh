#!/bin/sh
# scripts/check_style.sh fails where it should: on a copy of a small tree,
# a call of a banned function and a line clang-format would write
# differently are each reported with FILE:LINE, and the clean tree passes.
#
# usage: check_style_test.sh SOURCE_DIR
set -eu
SRC=$(cd "$1" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-style.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
fail() {
    echo "check_style_test: FAIL: $*" >&2
    exit 1
}
cp "$SRC/.clang-format" "$WORK/"
mkdir -p "$WORK/src"
cat >"$WORK/src/ok.c" <<'C'
#include <stdio.h>

/* sprintf is named in a comment only. */
int ok(char *buf, size_t size, int v)
{
    return snprintf(buf, size, "%d", v);
}
C
check() { sh "$SRC/scripts/check_style.sh" "$WORK" "$1" >"$WORK/out" 2>&1; }

check banned || fail "a clean tree fails banned: $(cat "$WORK/out")"
check format || fail "a clean tree fails format: $(cat "$WORK/out")"

printf 'void f(char *d, const char *s)\n{\n    strcpy(d, s);\n}\n' >"$WORK/src/bad.c"
if check banned; then
    fail "strcpy was not reported"
fi
grep -q "src/bad.c:3:" "$WORK/out" || fail "banned: no FILE:LINE: $(cat "$WORK/out")"
rm "$WORK/src/bad.c"

printf 'int g(int a){return a+1;}\n' >"$WORK/src/ugly.c"
if check format; then
    fail "a misformatted file was not reported"
fi
grep -q "src/ugly.c:1:" "$WORK/out" || fail "format: no FILE:LINE: $(cat "$WORK/out")"
echo "check_style_test: 4 passed, 0 failed"
