"""Extract every ```yaml example of the documentation into files that
`sluice config check` can load. Used by docs_examples_test.sh, whose header
describes the markers; this script only reads the pages and writes files.

usage: docs_examples.py SOURCE_DIR OUT_DIR

For block number N it writes OUT_DIR/N.yaml (the block, completed by its
wrapper) and prints one tab-separated line on stdout:

    N  check  PAGE  FENCE_LINE  FIRST  COUNT  TEMPLATE
    N  skip   PAGE  FENCE_LINE  REASON
    N  error  PAGE  FENCE_LINE  MESSAGE

where FIRST is the line of N.yaml that holds the block's first line and
COUNT the block's number of lines, so that an error at line L of N.yaml is
line FENCE_LINE + (L - FIRST) + 1 of PAGE when it falls inside the block.
"""

import glob
import os
import re
import sys

FENCE = re.compile(r"^(\s*)```\s*(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*config-(fragment|skip)\s*:(.*?)-->\s*$")
CHANNEL = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

# Wrappers: the text before the block, the indentation the block gets, and
# the text after it. {channels} is the `channels:` list of the marker's
# channel names (empty without names); {channel} is the first name.
TEMPLATES = {
    # Top-level keys of a service file; only the channels it uses are added.
    "top": ("{channels}", "", ""),
    # One consumer group: the mapping of a `consumers:` item.
    "consumer": ("{channels}consumers:\n  -\n", "    ", ""),
    # One handler: the mapping under a consumer's `handler:`.
    "handler": (
        "{channels}consumers:\n  - channel: {channel}\n    group: docs\n"
        "    handler:\n",
        "      ",
        "",
    ),
    # One gateway route: the mapping of a `gateway.routes:` item.
    "route": ("{channels}gateway:\n  routes:\n    -\n", "      ", ""),
}


def pages(src):
    found = [os.path.join(src, "README.md")]
    found += sorted(glob.glob(os.path.join(src, "docs", "**", "*.md"),
                              recursive=True))
    return found


def blocks(text):
    """Yield (fence_line, lang, marker, body_lines) for every fenced block;
    marker is the config-* comment on the nearest non-blank line above."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                for ln in lines[i + 1:j]]
        k = i - 1
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        marker = MARKER.match(lines[k]) if k >= 0 else None
        yield i + 1, lang, marker, body
        i = j + 1


def wrap(marker_args, body):
    """Return (text, first_line, template) or raise ValueError."""
    words = marker_args.split()
    if not words or words[0] not in TEMPLATES:
        raise ValueError("config-fragment needs one of %s, got %r"
                         % (", ".join(sorted(TEMPLATES)), marker_args.strip()))
    name, channels = words[0], words[1:]
    for ch in channels:
        if not CHANNEL.match(ch):
            raise ValueError("config-fragment: %r is not a channel name" % ch)
    if name == "handler" and not channels:
        raise ValueError("config-fragment: handler needs the consumed "
                         "channel's name")
    before, indent, after = TEMPLATES[name]
    decl = ""
    if channels:
        decl = "channels:\n" + "".join("  - name: %s\n" % c for c in channels)
    before = before.format(channels=decl,
                           channel=channels[0] if channels else "")
    text = before + "".join((indent + ln if ln else ln) + "\n"
                            for ln in body) + after
    return text, before.count("\n") + 1, name


def main():
    src, out = sys.argv[1], sys.argv[2]
    n = 0
    for page in pages(src):
        rel = os.path.relpath(page, src)
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for line, lang, marker, body in blocks(text):
            if marker is not None and lang not in ("yaml", "yml"):
                print("%d\terror\t%s\t%d\ta config-%s marker before a "
                      "```%s block" % (n + 1, rel, line, marker.group(1),
                                       lang))
                n += 1
                continue
            if lang not in ("yaml", "yml"):
                continue
            n += 1
            if marker is not None and marker.group(1) == "skip":
                reason = marker.group(2).strip()
                if not reason:
                    print("%d\terror\t%s\t%d\tconfig-skip needs a reason"
                          % (n, rel, line))
                else:
                    print("%d\tskip\t%s\t%d\t%s" % (n, rel, line, reason))
                continue
            try:
                if marker is None:
                    wrapped, first, name = "".join(
                        ln + "\n" for ln in body), 1, "file"
                else:
                    wrapped, first, name = wrap(marker.group(2), body)
            except ValueError as e:
                print("%d\terror\t%s\t%d\t%s" % (n, rel, line, e))
                continue
            with open(os.path.join(out, "%d.yaml" % n), "w",
                      encoding="utf-8") as f:
                f.write(wrapped)
            print("%d\tcheck\t%s\t%d\t%d\t%d\t%s"
                  % (n, rel, line, first, len(body), name))


if __name__ == "__main__":
    main()
