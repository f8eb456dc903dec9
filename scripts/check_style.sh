#!/bin/sh
# The style the tools enforce, over every C file of the repository:
#
#   format   each file is as clang-format (.clang-format) would write it;
#            a difference is reported as FILE:LINE:COLUMN by clang-format
#   banned   no call of sprintf, vsprintf, strcpy, strcat, atoi or gets
#            (unbounded writes, no error reporting): FILE:LINE and the call
#
# usage: check_style.sh SOURCE_DIR format|banned
# Exits 1 naming every offence; 0 when there is none.
set -eu
cd "$1"
what=$2

# The C files: git's list in a checkout, else every one found below.
files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files '*.c' '*.h'
    else
        find . -name '*.[ch]' | sed 's|^\./||' | sort
    fi
}

case $what in
format)
    command -v clang-format >/dev/null ||
        { echo "check_style: clang-format is missing (sh scripts/deps.sh)" >&2; exit 1; }
    out=$(files | xargs clang-format --dry-run --Werror 2>&1 || true)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | grep -E '^[^ ].*: (error|warning):' >&2 || printf '%s\n' "$out" >&2
        n=$(printf '%s\n' "$out" | grep -cE '^[^ ].*: (error|warning):' || true)
        echo "check_style: $n place(s) differ from .clang-format; run clang-format -i on the files named" >&2
        exit 1
    fi
    echo "check_style: $(files | wc -l) files as .clang-format writes them"
    ;;
banned)
    # A call: the name, optional blanks, an opening parenthesis.
    out=$(files | xargs grep -nHE '(^|[^A-Za-z0-9_])(sprintf|vsprintf|strcpy|strcat|atoi|gets)[[:space:]]*\(' || true)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        echo "check_style: banned functions above: use snprintf, a length-checked copy, strtol/strtoul with error checks, or fgets" >&2
        exit 1
    fi
    echo "check_style: no banned function in $(files | wc -l) files"
    ;;
*)
    echo "usage: check_style.sh SOURCE_DIR format|banned" >&2
    exit 2
    ;;
esac
