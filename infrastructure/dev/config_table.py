"""Regenerates the configuration table in README.md from the daemons' own --print-config.

usage: /usr/bin/python3 infrastructure/dev/config_table.py [BIN_DIR]   (default build/bin)
The table sits between <!-- config:begin --> and <!-- config:end -->.
"""
import collections, os, re, subprocess, sys

DAEMONS = ["gateway", "build-master", "build-worker", "lambda-executor"]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "bin")
rows = collections.OrderedDict()
for d in DAEMONS:
    out = subprocess.run([os.path.join(bin_dir, d), "--print-config"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines()[2:]:
        name, default, meaning = [c.strip() for c in line.strip().strip("|").split("|", 2)]  # a meaning may hold "|"
        row = rows.setdefault(name, [default, meaning, [], {}])
        row[2].append(d)
        if default != row[0]:
            row[3][d] = default
common = [k for k, v in rows.items() if len(v[2]) == len(DAEMONS)]
ordered = common + sorted(k for k in rows if k not in common)
lines = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
for k in ordered:
    default, meaning, used, other = rows[k]
    who = "all" if len(used) == len(DAEMONS) else ", ".join(used)
    if other:
        default += " (" + ", ".join(f"{d}: {v}" for d, v in other.items()) + ")"
    cell = meaning.replace("|", "\\|")   # a "|" in a help text would end the cell
    lines.append(f"| {k} | {default} | {who} | {cell} |")
readme = os.path.join(root, "README.md")
text = open(readme).read()
new = re.sub(r"(<!-- config:begin -->\n).*?(<!-- config:end -->)",
             lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text, flags=re.S)
if new == text and "<!-- config:begin -->" not in text:
    sys.exit("README.md has no <!-- config:begin --> marker")
open(readme, "w").write(new)
print(f"config table: {len(ordered)} variables")
