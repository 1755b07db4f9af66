#!/usr/bin/env python3
"""PyTorch GEMM baseline for `arbitor bench kernels --device cuda`.

The same GEMMs as the C benchmark's training shapes (tokens x in x out), on the same GPU, as a
PyTorch user runs them: torch._int_mm(x, w.t()) with int8 x (tokens x in) and int8 w (out x in),
i.e. a K-major B (the layout int8 tensor cores need; a row-major B is far slower), int32 out; and
torch.matmul(x, w.t()) in bf16. Random inputs; CUDA events around batches of calls after a
warm-up; the median batch. Prints one line per measurement:
    TORCH <int8|bf16> <tokens>x<in>x<out> <median ms>
and "TORCH unavailable <why>" when torch or its CUDA device is missing (the C bench then omits
the PyTorch columns).
"""
import argparse
import statistics


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="16384x2048x2048,16384x2048x8192", help="tokens x in x out, comma-separated")
    ap.add_argument("--device-index", type=int, default=0)
    ap.add_argument("--reps", type=int, default=10, help="calls per timed batch")
    ap.add_argument("--batches", type=int, default=7)
    a = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"TORCH unavailable {e}", flush=True)
        return 0
    if not torch.cuda.is_available() or torch.cuda.device_count() <= a.device_index:
        print("TORCH unavailable no CUDA device for torch", flush=True)
        return 0
    dev = torch.device("cuda", a.device_index)
    torch.cuda.set_device(dev)
    print(f"TORCH version {torch.__version__} {torch.cuda.get_device_name(dev)}", flush=True)
    g = torch.Generator(device=dev)
    g.manual_seed(1234)

    def timed(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(a.batches):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(a.reps):
                fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / a.reps)
        return statistics.median(times)

    for sh in a.shapes.split(","):
        m, k, n = (int(v) for v in sh.lower().split("x"))
        x8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=dev, generator=g)
        w8 = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev, generator=g)
        try:
            ms = timed(lambda: torch._int_mm(x8, w8.t()))
            print(f"TORCH int8 {m}x{k}x{n} {ms:.5f}", flush=True)
        except RuntimeError as e:  # an old torch or a card without int8 GEMM
            print(f"TORCH int8-unavailable {m}x{k}x{n} {str(e).splitlines()[0]}", flush=True)
        del x8, w8
        xb = torch.rand((m, k), dtype=torch.bfloat16, device=dev, generator=g) * 2 - 1
        wb = torch.rand((n, k), dtype=torch.bfloat16, device=dev, generator=g) * 2 - 1
        ms = timed(lambda: torch.matmul(xb, wb.t()))
        print(f"TORCH bf16 {m}x{k}x{n} {ms:.5f}", flush=True)
        del xb, wb
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
