#!/bin/sh
# Every YAML example of the documentation is a configuration that
# `sluice config check` accepts, so an example cannot drift from the
# loader: a renamed or removed key fails this test, naming the page and line.
#
# usage: docs_examples_test.sh SOURCE_DIR SLUICE_BINARY BUILD_DIR PLUGIN
#
# It reads README.md and docs/**/*.md. Each ```yaml (or ```yml) block is
# checked as a whole service file, unless the nearest non-blank line above
# its opening fence is one of these HTML comments (invisible when rendered):
#
#   <!-- config-fragment: TEMPLATE [CHANNEL...] -->
#       The block is part of a file; the wrapper TEMPLATE completes it and
#       declares the CHANNELs under `channels:` (the fragment's own
#       channels, which the loader wants declared):
#         top       top-level keys (`consumers:`, `gateway:`, ...) of a file
#                   that lacks only its `channels:`
#         consumer  one item of `consumers:` (channel, group, handler, ...)
#         handler   the mapping under a consumer's `handler:`; the first
#                   CHANNEL is the one it consumes
#         route     one item of `gateway.routes:`
#   <!-- config-skip: REASON -->
#       The block is not a sluice configuration (a Kubernetes manifest, a
#       deliberately wrong input); REASON says why. Not checked, counted.
#
# A marker before a block of another language, an unknown template or a
# skip without a reason fails the test.
#
# Each block is checked in an empty directory of its own, in which `build`
# is the build directory, so that plugin paths such as
# ./build/examples/libgreeter.so are the plugins the build made; such a
# path must exist. Any other relative plugin `path:` ending in .so (a
# reader's own ./libbilling.so) is made to exist there as a link to PLUGIN,
# an example plugin that defines `sluice_handle`. Relative files the example
# names (./data, ./audit.log) are thus created, if ever, in that directory.
set -u
SRC=$(cd "$1" && pwd)
S=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
BUILD=$(cd "$3" && pwd)
PLUGIN=$(cd "$(dirname "$4")" && pwd)/$(basename "$4")
[ -x "$S" ] || { echo "docs_examples_test: FAIL: no binary at $S" >&2; exit 1; }
[ -f "$PLUGIN" ] || {
    echo "docs_examples_test: FAIL: no plugin at $PLUGIN" >&2
    exit 1
}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-docs-examples.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
mkdir "$WORK/blocks" || exit 1

if ! /usr/bin/python3 "$SRC/tests/integration/docs_examples.py" "$SRC" \
    "$WORK/blocks" >"$WORK/manifest"; then
    echo "docs_examples_test: FAIL: extracting the examples failed" >&2
    exit 1
fi

CHECKED=0
SKIPPED=0
FAILED=0
TAB=$(printf '\t')

# fail PAGE LINE MESSAGE: one failure, in the compiler's form.
fail() {
    echo "$1:$2: $3" >&2
    FAILED=$((FAILED + 1))
}

# page_line LINE: the page's line of a line of the wrapped file (the
# opening fence's when it is not one of the block's lines).
page_line() {
    if [ -n "$1" ] && [ "$1" -ge "$first" ] &&
        [ "$1" -lt $((first + count)) ]; then
        echo $((fence + $1 - first + 1))
    else
        echo "$fence"
    fi
}

# check_block N PAGE FENCE FIRST COUNT TEMPLATE
check_block() {
    n=$1 page=$2 fence=$3 first=$4 count=$5 template=$6
    dir="$WORK/$n"
    CHECKED=$((CHECKED + 1))
    mkdir "$dir" && cp "$WORK/blocks/$n.yaml" "$dir/$n.yaml" || return 1
    ln -s "$BUILD" "$dir/build"
    # Plugin paths, block style (path: X) and flow style ({path: X}), each
    # as "LINE PATH".
    plugins=$(grep -noE '(^|[{, ])path: *"?[^",} ]+\.so' "$dir/$n.yaml" |
        sed -E 's/^([0-9]+):.*path: *"?/\1 /')
    while read -r at p; do
        case $p in
        "" | /*) ;;
        ./build/* | build/*)
            if [ ! -e "$dir/$p" ]; then
                fail "$page" "$(page_line "$at")" \
                    "plugin $p is not made by the build"
                return 0
            fi
            ;;
        *)
            mkdir -p "$(dirname "$dir/$p")" && ln -sf "$PLUGIN" "$dir/$p"
            ;;
        esac
    done <<EOF
$plugins
EOF
    if (cd "$dir" && "$S" config check "$n.yaml") >"$dir/out" 2>&1 \
        </dev/null; then
        return 0
    fi
    # "sluice: N.yaml:LINE:COLUMN: message"
    msg=$(head -n 1 "$dir/out")
    at=$(printf '%s\n' "$msg" |
        sed -nE "s/^(sluice: )?$n\\.yaml:([0-9]+):[0-9]+: .*/\\2/p")
    fail "$page" "$(page_line "$at")" \
        "example (\`\`\`yaml at line $fence, $template) fails config check: $msg"
    if [ "$template" != file ]; then
        echo "  as completed by the $template wrapper:" >&2
        awk '{ printf "  %3d  %s\n", NR, $0 }' "$dir/$n.yaml" >&2
    fi
}

while IFS="$TAB" read -r n what page fence a b c; do
    case $what in
    check) check_block "$n" "$page" "$fence" "$a" "$b" "$c" ;;
    skip) SKIPPED=$((SKIPPED + 1)) ;;
    *) fail "$page" "$fence" "$a" ;;
    esac
done <"$WORK/manifest"

echo "docs_examples_test: $CHECKED YAML example(s) checked," \
    "$SKIPPED skipped, $FAILED failure(s)"
if [ "$CHECKED" -eq 0 ]; then
    echo "docs_examples_test: FAIL: no example found in $SRC" >&2
    exit 1
fi
if [ "$FAILED" -ne 0 ]; then
    echo "docs_examples_test: FAIL (a block that is part of a file, or no" \
        "sluice configuration at all, needs a marker: see the header of" \
        "tests/integration/docs_examples_test.sh)" >&2
    exit 1
fi
echo "docs_examples_test: PASS"
