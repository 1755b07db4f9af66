#!/usr/bin/env python3
"""PyTorch eager baseline for `arbitor bench sidecars`.

Runs the same three workloads as the C benchmark on the same synthetic checkpoints
(`arbitor sidecar synth ...`): DINOv2-small on 224x224, the Moonshine-base encoder on 10 s of
16 kHz audio, the SD VAE decoder to 256x256. CPU: fp32, eager, torch.set_num_threads(THREADS).
--device cuda: bf16 weights and inputs on the GPU, eager (SDPA attention as transformers picks
it), inputs already on the device, timed with a synchronize after each forward.
Prints one line per measurement:  TORCH <model> b<batch> <median ms>
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dinov2", help="synthetic dinov2 checkpoint dir")
    ap.add_argument("--moonshine", help="synthetic moonshine checkpoint dir")
    ap.add_argument("--vae", help="synthetic vae checkpoint dir")
    ap.add_argument("--batches", default="1,32", help="comma-separated batch sizes (dinov2, moonshine)")
    ap.add_argument("--vae-batches", default="1", help="comma-separated batch sizes for the VAE decode")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError as e:  # the C bench treats this as "PyTorch not installed"
        print(f"TORCH unavailable {e}", flush=True)
        return 0
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("TORCH unavailable: torch.cuda.is_available() is False", flush=True)
        return 0
    dev = torch.device(a.device)
    dt = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def timeit(fn, iters):
        with torch.inference_mode():
            fn()  # warm-up
            if cuda:  # cuDNN/cuBLAS autotuning and the caching allocator settle on the second call
                fn()
            sync()
            ts = []
            for _ in range(iters):
                t = time.perf_counter()
                fn()
                sync()
                ts.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ts)

    def its(b):  # CPU: big batches once; GPU: a few runs each
        return a.iters if b == 1 else (max(3, a.iters // 4) if cuda else 1)

    batches = [int(b) for b in a.batches.split(",") if b]
    if a.dinov2:
        from transformers import Dinov2Model

        m = Dinov2Model.from_pretrained(a.dinov2).eval().to(dev, dt)  # maps the checkpoint's key names
        for b in batches:
            x = torch.randn(b, 3, 224, 224).to(dev, dt)
            print(f"TORCH dinov2 b{b} {timeit(lambda: m(pixel_values=x), its(b)):.3f}", flush=True)
        del m
    if a.moonshine:
        from transformers import MoonshineForConditionalGeneration

        m = MoonshineForConditionalGeneration.from_pretrained(a.moonshine).eval().to(dev, dt)
        enc = m.model.encoder
        for b in batches:
            x = (0.1 * torch.randn(b, 160000)).to(dev, dt)
            print(f"TORCH moonshine b{b} {timeit(lambda: enc(x), its(b)):.3f}", flush=True)
        del m
    if a.vae:
        from diffusers import AutoencoderKL

        cfg = json.load(open(os.path.join(a.vae, "config.json")))
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        m = AutoencoderKL(**cfg).eval()
        m.load_state_dict(load_file(os.path.join(a.vae, "diffusion_pytorch_model.safetensors")))
        m = m.to(dev, dt)
        for b in [int(v) for v in a.vae_batches.split(",") if v]:
            z = torch.randn(b, 4, 32, 32).to(dev, dt)
            print(f"TORCH vae_decode b{b} {timeit(lambda: m.decode(z), its(b)):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
