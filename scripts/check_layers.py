#!/usr/bin/python3
"""Check that every #include in src/, cmd/ and include/ goes down the layers.

The layers, lowest first (docs/architecture.md, "Layers"):

    core -> flow -> obs -> engine -> runtime -> http -> pipeline -> host -> cmd

A file may include files of its own layer and of the layers below it, and
no one's private headers:

  * a public header (include/sluice/) includes only public headers;
  * the CLI (cmd/) includes only public headers and its own files;
  * an engine's folder (src/engine/<name>/) is private to that engine;
    src/engine/*.h are the engine layer's shared headers. Until an engine
    has its folder, the files named after it (src/engine/nats_int.h) are
    private to it all the same.

Usage: check_layers.py [SOURCE_DIR]. Prints FILE:LINE: and the rule broken
for each violation, and exits 1 when there is any.
"""

import os
import re
import sys

LAYERS = ["core", "flow", "obs", "engine", "runtime", "http", "pipeline",
          "host", "cmd"]
RANK = {name: i for i, name in enumerate(LAYERS)}

# Each public header belongs to the layer that implements it. sluice.h,
# which includes every public header, sits at the top of the library.
PUBLIC_LAYER = {
    "alloc.h": "core",
    "export.h": "core",  # the export macro every public header may use
    "clock.h": "core",
    "duration.h": "core",
    "event.h": "core",
    "log.h": "core",
    "status.h": "core",
    "breaker.h": "flow",
    "limiter.h": "flow",
    "queue.h": "flow",
    "retry.h": "flow",
    "token_bucket.h": "flow",
    "metrics.h": "obs",
    "engine.h": "engine",
    "consumer.h": "runtime",
    "http_handler.h": "runtime",
    "plugin.h": "runtime",
    "producer.h": "runtime",
    "gateway.h": "http",
    "config.h": "host",
    "service.h": "host",
    "sluice.h": "host",
}

# Engines whose files may still sit directly in src/engine/ (named
# <engine>.c, <engine>_<part>.h) before they move to their folder.
ENGINE_NAMES = ["embedded", "amqp", "nats", "kafka"]

# Known exceptions, each with the reason it is still there: a file that
# may include an engine's private headers. Keyed by the engine, so that an
# entry survives the header's move into (or within) its engine's folder.
ALLOWED_ENGINE_PRIVATE = set()

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')


def engine_of(rel):
    """The engine a src/engine file is private to, or None when shared."""
    parts = rel.split("/")
    if len(parts) < 3 or parts[0] != "src" or parts[1] != "engine":
        return None
    if len(parts) > 3:
        return parts[2]
    base = parts[2]
    for name in ENGINE_NAMES:
        if base.startswith(name + ".") or base.startswith(name + "_"):
            return name
    return None


def layer_of(rel):
    """The layer of a file given relative to the source tree, or None."""
    parts = rel.split("/")
    if parts[0] == "include" and len(parts) == 3 and parts[1] == "sluice":
        return PUBLIC_LAYER.get(parts[2])
    if parts[0] == "src" and len(parts) >= 3 and parts[1] in RANK:
        return parts[1] if parts[1] != "cmd" else None
    if parts[0] == "cmd":
        return "cmd"
    return None


def resolve(root, rel, target, quoted):
    """The included file relative to root, or None when it is not ours."""
    candidates = []
    if quoted:
        candidates.append(os.path.join(os.path.dirname(rel), target))
    candidates += [os.path.join("src", target), os.path.join("include", target)]
    for cand in candidates:
        cand = os.path.normpath(cand)
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def check_include(rel, target_rel):
    """The rule an include breaks, or None."""
    public = target_rel.startswith("include/")
    if rel.startswith("include/") and not public:
        return "a public header includes the private %s" % target_rel
    if rel.startswith("cmd/") and not public and \
            os.path.dirname(target_rel) != os.path.dirname(rel):
        return "the CLI includes the private %s (public headers only)" % \
            target_rel
    owner = engine_of(target_rel)
    if owner is not None and engine_of(rel) != owner and \
            (rel, owner) not in ALLOWED_ENGINE_PRIVATE:
        return "%s is private to the %s engine" % (target_rel, owner)
    mine = layer_of(rel)
    theirs = layer_of(target_rel)
    if theirs is None:
        return "%s belongs to no layer (add it to scripts/check_layers.py)" \
            % target_rel
    if RANK[theirs] > RANK[mine]:
        return "upward include: %s (%s) from layer %s" % (target_rel, theirs,
                                                          mine)
    return None


def sources(root):
    for top in ("src", "cmd", "include"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith((".c", ".h")):
                    full = os.path.join(dirpath, name)
                    yield os.path.relpath(full, root).replace(os.sep, "/")


def main(argv):
    root = argv[1] if len(argv) > 1 else \
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = 0
    files = 0
    for rel in sources(root):
        files += 1
        if layer_of(rel) is None:
            print("%s:1: belongs to no layer (folders: src/<layer>/, "
                  "include/sluice/ as mapped, cmd/)" % rel)
            problems += 1
            continue
        with open(os.path.join(root, rel), encoding="utf-8",
                  errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if m is None:
                    continue
                quoted = m.group(1) == '"'
                target = resolve(root, rel, m.group(2), quoted)
                if target is None:
                    if quoted:
                        print("%s:%d: \"%s\" is not a file of the tree" %
                              (rel, lineno, m.group(2)))
                        problems += 1
                    continue  # a system or library header
                rule = check_include(rel, target.replace(os.sep, "/"))
                if rule is not None:
                    print("%s:%d: %s" % (rel, lineno, rule))
                    problems += 1
    if problems:
        print("check_layers: %d include(s) break the layers "
              "(docs/architecture.md, \"Layers\")" % problems)
        return 1
    print("check_layers: %d files, every include goes down the layers" % files)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
