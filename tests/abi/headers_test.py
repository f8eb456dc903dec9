#!/usr/bin/env python3
"""The public headers are the manual.

Usage: headers_test.py INCLUDE_DIR

Fails, naming header and function, when
  * sluice/sluice.h does not include every other public header;
  * a public function has no Doxygen block (a /** comment right above it,
    or above the run of declarations it belongs to);
  * a function returning sl_status has a block that names no status
    (neither an SL_ value, "as <another function>" nor "@return @p arg");
  * neither the function's block nor its header's opening comment says
    from which threads it may be called.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exports_test import declared_names  # noqa: E402


def covering_block(lines, decl_line):
    """The /** block above the declaration on decl_line, walking up over the
    declarations of the same run; None when a blank line or a plain comment
    comes first."""
    i = decl_line - 1
    while i >= 0:
        line = lines[i].strip()
        if not line:
            return None
        if line.endswith("*/"):
            end = i
            while i >= 0 and "/*" not in lines[i]:
                i -= 1
            if i < 0 or "/**" not in lines[i]:
                return None
            return "\n".join(lines[i:end + 1])
        i -= 1
    return None


def opening_comment(text):
    m = re.match(r"\s*/\*.*?\*/", text, flags=re.S)
    return m.group(0) if m else ""


def check_header(path):
    problems = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    top = opening_comment(text)
    name = "sluice/" + os.path.basename(path)
    for fn in declared_names(text):
        decl = [i for i, l in enumerate(lines)
                if re.match(r"^[A-Za-z_]", l)
                and re.search(r"\b%s\s*\(" % fn, l)]
        if not decl:
            problems.append("%s: %s: declaration not found" % (name, fn))
            continue
        block = covering_block(lines, decl[0])
        if block is None:
            problems.append("%s: %s: no Doxygen block" % (name, fn))
            continue
        if re.match(r"^SL_API\s+sl_status\b", lines[decl[0]]) and not (
                re.search(r"\bSL_[A-Z_]+\b", block)
                or re.search(r"\b[Rr]eturns? as\b|@return (as\b|@p )|"
                             r"statuses", block)):
            problems.append("%s: %s: returns sl_status but its block names "
                            "no status" % (name, fn))
        if not re.search(r"thread", block, flags=re.I) and not re.search(
                r"thread", top, flags=re.I):
            problems.append("%s: %s: says nothing about threads (in its "
                            "block or the header's opening comment)"
                            % (name, fn))
    return problems


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    sub = os.path.join(argv[1], "sluice")
    headers = sorted(n for n in os.listdir(sub) if n.endswith(".h"))
    problems = []
    with open(os.path.join(sub, "sluice.h"), encoding="utf-8") as f:
        umbrella = set(re.findall(r'#include "sluice/([^"]+)"', f.read()))
    for h in headers:
        if h != "sluice.h" and h not in umbrella:
            problems.append("sluice/sluice.h does not include sluice/%s" % h)
    nfuncs = 0
    for h in headers:
        with open(os.path.join(sub, h), encoding="utf-8") as f:
            nfuncs += len(declared_names(f.read()))
        problems.extend(check_header(os.path.join(sub, h)))
    for p in problems:
        print(p)
    print("%d headers, %d functions, %d problems"
          % (len(headers), nfuncs, len(problems)))
    return 1 if problems or nfuncs < 50 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
