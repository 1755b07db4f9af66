#!/usr/bin/env python3
"""One line per profiled kernel launch of an `ncu` text report (dev/cuda/call_vae2.sh ncu): duration,
SM / memory / DRAM throughput, tensor (gmma) pipe, issue activity, shared-memory wavefronts and the
largest stall reasons (warps stalled per issued instruction)."""
import re
import sys

KEYS = {
    "Duration": "us",
    "Compute (SM) Throughput": "sm%",
    "Memory Throughput": "mem%",
    "DRAM Throughput": "dram%",
    "L2 Hit Rate": "l2hit%",
    "Issue Slots Busy": "issue%",
    "Warp Cycles Per Issued Instruction": "cyc/inst",
    "No Eligible": "noelig%",
    "Registers Per Thread": "regs",
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active": "gmma%",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum": "shwav",
    "smsp__inst_executed.sum": "inst",
}


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def main(path):
    launches = []
    cur = None
    for line in open(path, errors="replace"):
        if "k_conv3_wg" in line and "Context" in line:
            m = re.search(r"k_conv3_wg<([^>]*)>", line)
            cur = {"name": m.group(1) if m else "?", "v": {}, "stall": {}}
            launches.append(cur)
            continue
        if cur is None:
            continue
        t = line.split()
        if len(t) < 2:
            continue
        val = num(t[-1])
        if val is None:
            continue
        m = re.match(r"smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio", t[0])
        if m:
            cur["stall"][m.group(1)] = val
            continue
        for k, short in KEYS.items():
            if line.strip().startswith(k + " ") or t[0] == k:
                if short == "us" and len(t) >= 2 and t[-2] == "ms":
                    val *= 1e3
                cur["v"].setdefault(short, val)
    for i, L in enumerate(launches):
        v = " ".join(f"{k}={L['v'][k]:g}" for k in ["us", "sm%", "mem%", "dram%", "l2hit%", "gmma%", "issue%", "cyc/inst",
                                                     "noelig%", "regs", "shwav", "inst"] if k in L["v"])
        st = sorted(L["stall"].items(), key=lambda kv: -kv[1])[:6]
        print(f"#{i} <{L['name']}> {v} | stalls: " + " ".join(f"{k}={x:.2f}" for k, x in st))


if __name__ == "__main__":
    main(sys.argv[1])
