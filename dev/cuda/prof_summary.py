"""Sums `ncu --metrics gpu__time_duration.sum` output per kernel: calls, mean and total microseconds."""
import re, sys
from collections import defaultdict

tot, cnt, name = defaultdict(float), defaultdict(int), None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^  (?:void )?(\S.*?)\(.*\) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line)
    if m:
        name = m.group(1).replace("<unnamed>::", "")
        continue
    m = re.search(r"gpu__time_duration\.sum\s+(\w+)\s+([\d,.]+)", line)
    if m and name:
        v = float(m.group(2).replace(",", ""))
        v *= {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}.get(m.group(1), 1.0)
        tot[name] += v
        cnt[name] += 1
for k in sorted(tot, key=lambda k: -tot[k]):
    print(f"{k[:56]:56s} {cnt[k]:5d} calls {tot[k] / cnt[k]:10.1f} us avg {tot[k]:11.1f} us total")
