#!/usr/bin/python3
"""lint.py — fail on habits the style guide bans (docs/; issue 14).

Scans services/**/*.{c,h} and shared/*.{c,h}; prints "file:line: rule" per violation, a count per
rule, and exits 1 if there is any. Comments and string/char literals are blanked first, so a
banned name in a message or a comment does not count. Stdlib only; run from the repository root.
"""
import pathlib
import re
import sys

BANNED = ("strcpy strcat strncpy strncat sprintf vsprintf gets atoi atol atoll strtok "
          "rand srand").split()
# The one place a raw snprintf may live: the helper behind ml_snprintf / ml_snprintf_trunc.
SNPRINTF_OK = {"shared/util.c"}
# vsnprintf: the helpers (util.c), the logger's message line (log.c), and buf.c's growable
# printf, which measures first and then writes into exactly enough room.
VSNPRINTF_OK = {"shared/util.c", "shared/log.c", "shared/buf.c"}

RULES = {
    "banned-call": re.compile(r"(?<![\w.>])(%s)\s*\(" % "|".join(BANNED)),
    "raw-snprintf": re.compile(r"(?<![\w.>])snprintf\s*\("),
    "raw-vsnprintf": re.compile(r"(?<![\w.>])vsnprintf\s*\("),
    # ml_[v]snprintf as a whole statement (optionally (void)-cast): its truncation result is
    # dropped (ml_snprintf_trunc says so on purpose). The token before it is then ; { } ) :
    # else or the start of the file.
    "ignored-ml_snprintf": re.compile(r"(?:^|[;{}):]|\belse)\s*(?:\(\s*void\s*\)\s*)?"
                                      r"\b(ml_v?snprintf)\s*\("),
}


def strip(text):
    """Blank comments and string/char literals (keeping newlines, so line numbers hold)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c, nxt = text[i], text[i + 1:i + 2]
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif c == "/" and nxt == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
            continue
        else:
            out.append(c)
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", text[i:j]))
        i = j
    return "".join(out)


def files(root):
    for pat in ("services/**/*.c", "services/**/*.h", "shared/*.c", "shared/*.h"):
        yield from sorted(root.glob(pat))


def lint(root):
    found = []
    for path in files(root):
        rel = path.relative_to(root).as_posix()
        code = strip(path.read_text(errors="replace"))
        for rule, rx in RULES.items():
            if (rule == "raw-snprintf" and rel in SNPRINTF_OK) or \
               (rule == "raw-vsnprintf" and rel in VSNPRINTF_OK):
                continue
            for m in rx.finditer(code):
                line = code.count("\n", 0, m.start(1) if m.lastindex else m.start()) + 1
                name = m.group(1) if rule == "banned-call" else None
                found.append((rel, line, rule + (" (%s)" % name if name else "")))
    return found


def main():
    root = pathlib.Path(__file__).resolve().parents[2]
    found = lint(root)
    for rel, line, rule in sorted(found):
        print("%s:%d: %s" % (rel, line, rule))
    counts = {rule: 0 for rule in RULES}
    for _, _, rule in found:
        counts[rule.split()[0]] += 1
    print("lint: " + ", ".join("%s %d" % kv for kv in counts.items()))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
