#!/usr/bin/env python3
"""The shared library exports exactly the public API.

Usage: exports_test.py LIBSLUICE.so INCLUDE_DIR

Reads the functions (and data) declared at file scope in INCLUDE_DIR/sluice/
*.h, lists the dynamic symbols that LIBSLUICE.so defines (nm -D
--defined-only), and fails, naming them,

  * on every exported symbol that no public header declares: an internal
    function that leaks into the ABI (a missing -fvisibility=hidden, or an
    SL_API on a private declaration);
  * on every declared function that the library does not export: a public
    declaration without SL_API, which applications could not link against.

Static inline functions and macros are not symbols and are left out; so are
the few symbols the linker itself defines.
"""

import os
import re
import subprocess
import sys

# Symbols the toolchain adds to every shared object, whatever its sources.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}

IDENT = re.compile(r"[A-Za-z_]\w*")


def strip_comments_and_directives(text):
    """The header's C text without comments, preprocessor lines or the
    extern "C" wrapper (which lives inside #ifdef __cplusplus)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = text.replace("\\\n", " ")
    out = []
    skipping_cplusplus = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            directive = stripped[1:].strip()
            if skipping_cplusplus:
                if directive.startswith("if"):
                    skipping_cplusplus += 1
                elif directive.startswith("endif"):
                    skipping_cplusplus -= 1
            elif re.match(r"ifdef\s+__cplusplus\b", directive):
                skipping_cplusplus = 1
            continue
        if not skipping_cplusplus:
            out.append(line)
    return "\n".join(out)


def top_level_statements(text):
    """Yield (statement, ends_with_body) for each statement at file scope:
    the text outside any braces up to a ';', or up to the body of a function
    definition."""
    depth = 0
    stmt = []
    definition = False
    for ch in text:
        if depth == 0:
            if ch == ";":
                yield "".join(stmt), False
                stmt = []
                continue
            if ch == "{":
                depth = 1
                # A body right after a parameter list is a function
                # definition (static inline); it ends at its brace.
                definition = "".join(stmt).rstrip().endswith(")")
                continue
            stmt.append(ch)
        else:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and definition:
                    yield "".join(stmt), True
                    stmt = []
                    definition = False
    if "".join(stmt).strip():
        yield "".join(stmt), False


def declared_names(header_text):
    """Names of the functions and objects a header declares with external
    linkage."""
    names = []
    for stmt, is_definition in top_level_statements(
            strip_comments_and_directives(header_text)):
        stmt = " ".join(stmt.split())
        if not stmt or is_definition:
            continue
        words = IDENT.findall(stmt)
        if not words or words[0] in ("typedef", "static"):
            # A typedef or a static function defines no exported symbol.
            continue
        # The declarator is the first identifier followed by "(" (a
        # function), else the last identifier (an object).
        m = re.search(r"([A-Za-z_]\w*)\s*\(", stmt)
        if m:
            names.append(m.group(1))
        elif words[0] == "extern":
            names.append(re.findall(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*$",
                                    stmt)[0])
    return names


def public_declarations(include_dir):
    decls = {}
    sub = os.path.join(include_dir, "sluice")
    for name in sorted(os.listdir(sub)):
        if name.endswith(".h"):
            with open(os.path.join(sub, name), encoding="utf-8") as f:
                for sym in declared_names(f.read()):
                    decls[sym] = "sluice/" + name
    return decls


def exported_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            # Versioned names read "name@@VERSION".
            syms.add(parts[2].split("@")[0])
    return syms - LINKER_SYMBOLS


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    lib, include_dir = argv[1], argv[2]
    decls = public_declarations(include_dir)
    syms = exported_symbols(lib)
    if len(decls) < 50:
        # A parser that finds (almost) nothing would pass the second check
        # vacuously and fail the first one for the wrong reason.
        print("only %d declarations found in %s/sluice; the header parser "
              "is broken" % (len(decls), include_dir))
        return 1
    leaked = sorted(syms - set(decls))
    missing = sorted(set(decls) - syms)
    for sym in leaked:
        print("exported but not in any public header: %s" % sym)
    for sym in missing:
        print("declared in %s but not exported (missing SL_API?): %s"
              % (decls[sym], sym))
    print("%d public declarations, %d exported symbols, %d leaked, "
          "%d missing" % (len(decls), len(syms), len(leaked), len(missing)))
    return 1 if leaked or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
