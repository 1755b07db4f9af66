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
        cfg = json.load(open(os.path.join(a.vae, "config.json")))
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        sd = load_file(os.path.join(a.vae, "diffusion_pytorch_model.safetensors"))
        try:
            from diffusers import AutoencoderKL

            m = AutoencoderKL(**cfg).eval()
            m.load_state_dict(sd)
            decode = m.decode
            what = ""
        except ImportError:  # the GPU machine has torch + transformers but no diffusers
            m = plain_vae_decoder(torch, cfg, sd)
            decode = m
            what = " (plain-PyTorch decoder: diffusers absent)"
        m = m.to(dev, dt)
        for b in [int(v) for v in a.vae_batches.split(",") if v]:
            z = torch.randn(b, cfg.get("latent_channels", 4), 32, 32).to(dev, dt)
            print(f"TORCH vae_decode b{b} {timeit(lambda: decode(z), its(b)):.3f}{what}", flush=True)
    return 0


def plain_vae_decoder(torch, cfg, sd):
    """diffusers' AutoencoderKL decode path (post_quant_conv + Decoder: conv_in, mid block with
    resnets and single-head attention, UpDecoderBlock2D resnets + nearest-x2 upsamplers,
    GroupNorm + SiLU + conv_out) with the same module names, for machines without diffusers."""
    nn, F = torch.nn, torch.nn.functional
    G = cfg.get("norm_num_groups", 32)
    ch = cfg["block_out_channels"]
    lpb = cfg.get("layers_per_block", 1)
    L = cfg.get("latent_channels", 4)

    class Res(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(G, cin, eps=1e-6), nn.Conv2d(cin, cout, 3, padding=1)
            self.norm2, self.conv2 = nn.GroupNorm(G, cout, eps=1e-6), nn.Conv2d(cout, cout, 3, padding=1)
            self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x):
            h = self.conv1(F.silu(self.norm1(x)))
            h = self.conv2(F.silu(self.norm2(h)))
            return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h

    class Attn(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.group_norm = nn.GroupNorm(G, c, eps=1e-6)
            self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
            self.to_out = nn.ModuleList([nn.Linear(c, c)])

        def forward(self, x):
            b, c, h, w = x.shape
            t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
            q, k, v = (f(t).unsqueeze(1) for f in (self.to_q, self.to_k, self.to_v))
            o = F.scaled_dot_product_attention(q, k, v).squeeze(1)
            return x + self.to_out[0](o).transpose(1, 2).reshape(b, c, h, w)

    class Mid(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.resnets = nn.ModuleList([Res(c, c), Res(c, c)])
            self.attentions = nn.ModuleList([Attn(c)])

        def forward(self, x):
            return self.resnets[1](self.attentions[0](self.resnets[0](x)))

    class Up(nn.Module):
        def __init__(self, cin, cout, up):
            super().__init__()
            self.resnets = nn.ModuleList([Res(cin if i == 0 else cout, cout) for i in range(lpb + 1)])
            self.upsamplers = nn.ModuleList([nn.Module()]) if up else None
            if up:
                self.upsamplers[0].conv = nn.Conv2d(cout, cout, 3, padding=1)

        def forward(self, x):
            for r in self.resnets:
                x = r(x)
            if self.upsamplers is not None:
                x = self.upsamplers[0].conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            return x

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            top = ch[-1]
            self.conv_in = nn.Conv2d(L, top, 3, padding=1)
            self.mid_block = Mid(top)
            rev = list(reversed(ch))
            self.up_blocks = nn.ModuleList(
                [Up(rev[max(i - 1, 0)], rev[i], i < len(ch) - 1) for i in range(len(ch))])
            self.conv_norm_out = nn.GroupNorm(G, ch[0], eps=1e-6)
            self.conv_out = nn.Conv2d(ch[0], cfg.get("out_channels", 3), 3, padding=1)

        def forward(self, z):
            x = self.mid_block(self.conv_in(z))
            for u in self.up_blocks:
                x = u(x)
            return self.conv_out(F.silu(self.conv_norm_out(x)))

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.post_quant_conv = nn.Conv2d(L, L, 1)
            self.decoder = Dec()

        def forward(self, z):
            return self.decoder(self.post_quant_conv(z))

    m = VAE().eval()
    keys = {k: v for k, v in sd.items() if k.startswith(("decoder.", "post_quant_conv."))}
    m.load_state_dict(keys, strict=True)  # every decoder tensor, by diffusers' names
    return m


if __name__ == "__main__":
    sys.exit(main())
