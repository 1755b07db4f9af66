#!/usr/bin/env python3
"""Summarize an `ncu --page source --print-source sass --csv` export: warp-stall samples per SASS
opcode and the hottest instructions (where a kernel's cycles go, e.g. mainloop waits vs epilogue
stores). Usage: ncu_sass_hot.py FILE.csv [TOP]"""
import csv, sys, collections

rows = list(csv.reader(open(sys.argv[1], newline="", errors="replace")))
top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
hdr_i = next(i for i, r in enumerate(rows) if any("Source" == c.strip() for c in r))
hdr = [c.strip() for c in rows[hdr_i]]
src = hdr.index("Source")
samp = next(i for i, c in enumerate(hdr) if c.startswith("Warp Stall Sampling (All"))
addr = hdr.index("Address") if "Address" in hdr else None
by_op, total, lines = collections.Counter(), 0, []
for r in rows[hdr_i + 1:]:
    if len(r) <= max(src, samp):
        continue
    try:
        n = int(float(r[samp].replace(",", "") or 0))
    except ValueError:
        continue
    text = r[src].strip()
    op = text.split()[0] if text else "?"
    if op.startswith("@"):
        op = text.split()[1] if len(text.split()) > 1 else op
    by_op[op.split(".")[0]] += n
    total += n
    lines.append((n, r[addr] if addr is not None else "", text))
print(f"{total} warp-stall samples")
for op, n in by_op.most_common(20):
    print(f"  {op:12s} {n:8d}  {100.0 * n / max(total, 1):5.1f} %")
print("hottest instructions:")
for n, a, t in sorted(lines, reverse=True)[:top]:
    print(f"  {n:7d} {100.0 * n / max(total, 1):5.1f} %  {a}  {t[:110]}")
