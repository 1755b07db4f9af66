"""One backward call's GPU timeline from `nsys stats --report cuda_gpu_trace --format csv`:
every kernel/memcpy/memset between two consecutive starts of k_bwd_amax (one whole call, the gap to
the next call included; BACK = how many calls before the last one, default 0), each op's start
relative to the window, duration, stream; then busy time (the union over streams), idle gaps
> 1 us, and the span.   usage: nsys_gaps.py trace.csv [marker] [BACK]"""
import csv, sys

rows = []
with open(sys.argv[1], newline="", errors="replace") as f:
    lines = [l for l in f if l.count(",") > 3]
rd = csv.reader(lines)
hdr = next(rd)
def col(*names):
    for n in names:
        for i, h in enumerate(hdr):
            if h.strip().lower().startswith(n.lower()):
                return i
    return None
ci_s, ci_d, ci_n, ci_st = col("Start"), col("Duration"), col("Name"), col("Strm", "Stream")
for r in rd:
    try:
        rows.append((int(float(r[ci_s])), int(float(r[ci_d])), r[ci_n], r[ci_st] if ci_st is not None else "?"))
    except (ValueError, IndexError):
        pass
rows.sort()
marker = sys.argv[2] if len(sys.argv) > 2 else "k_bwd_amax"
idx = [i for i, r in enumerate(rows) if marker in r[2]]
if len(idx) < 2:
    print("fewer than two", marker, "launches"); sys.exit(0)
back = int(sys.argv[3]) if len(sys.argv) > 3 else 0
if len(idx) < 2 + back:
    print("fewer than", 2 + back, marker, "launches"); sys.exit(0)
a, b = idx[-2 - back], idx[-1 - back]
win = rows[a:b]
t0 = win[0][0]
for s, d, n, st in win:
    print(f"{(s - t0) / 1e3:9.1f} us +{d / 1e3:8.1f} us  strm {st:>3}  {n[:90]}")
iv = sorted((s, s + d) for s, d, _, _ in win)
busy, cur, gaps = 0, None, []
for s, e in iv:
    if cur is None or s > cur[1]:
        if cur is not None:
            busy += cur[1] - cur[0]
            if s - cur[1] > 1000: gaps.append(((cur[1] - t0) / 1e3, (s - cur[1]) / 1e3))
        cur = [s, e]
    else:
        cur[1] = max(cur[1], e)
busy += cur[1] - cur[0]
span = rows[b][0] - t0
print(f"window {span / 1e3:.1f} us (amax to next amax), GPU busy {busy / 1e3:.1f} us, idle {(span - busy) / 1e3:.1f} us")
print("idle gaps > 1 us (at, length):", ", ".join(f"{g[0]:.0f}:{g[1]:.1f}" for g in gaps))
