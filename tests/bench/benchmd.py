"""Appending a dated section of measured rows to docs/benchmarks.md (every bench script)."""
import time


def append_section(out, title, intro, rows):
    """Writes "## <title> (<today>)", the intro lines (the command and setup), then a
    measurement/result/target table of rows to out, and prints the rows."""
    section = ["", f"## {title} ({time.strftime('%Y-%m-%d', time.gmtime())})", "", *intro, "",
               "| measurement | result | target |", "|---|---|---|"] + rows
    with open(out, "a") as f:
        f.write("\n".join(section) + "\n")
    print("\n".join(rows))
