"""PyTorch latent-weight ternary QAT baseline (BitNet b1.58 style) for arbitor's GPU speed bar.

The shakespeare shape of ../shared/reference/bytelm.py's `bitnet` variant: 6 blocks, width 384,
6 heads, context 256, batch 64, bytes as tokens; BitLinear = latent fp32 weights, absmean
ternary + straight-through, per-token int8 activations + straight-through; AdamW (lr 1e-3,
betas 0.9/0.99), bf16 autocast, torch.compile, grad clip 1.0. It measures training throughput:
tokens per second over timed steps after a warm-up (compile) phase, on the same data and
split as `arbitor train` (first 90% train). Compare with
`arbitor train --config shakespeare --device cuda` on the same GPU.

usage: python3 bench/torch_qat_baseline.py [--data FILE] [--iters N] [--warmup N]
           [--batch 64] [--ctx 256] [--device cuda|cpu] [--no-compile] [--eval] [--profile N]
Prints one line: QAT_BASELINE tokens_per_s=... step_ms=... iters=... batch=... ctx=... device=...
and, on stderr, the warm-up's wall time and the timed steps' ms/step per window of 10 (CUDA
events, no extra synchronization), to see compile time, drift and clock changes; --profile N
profiles N more steps and prints the GPU's kernel time per step against the wall time per step
(a step whose kernels take much less than its wall time is bound by the host's launches).
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt"))
ap.add_argument("--iters", type=int, default=100, help="timed steps")
ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--ctx", type=int, default=256)
ap.add_argument("--layers", type=int, default=6)
ap.add_argument("--dim", type=int, default=384)
ap.add_argument("--heads", type=int, default=6)
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (smoke tests on CPU)")
ap.add_argument("--eval", action="store_true", help="also print validation loss (nats/byte) after the timed steps")
ap.add_argument("--profile", type=int, default=0, help="profile N more steps: kernel time vs wall time per step")
args = ap.parse_args()

if not os.path.isfile(args.data):
    sys.exit(f"torch_qat_baseline: error: data file {args.data} not found (pass --data FILE)")
raw = open(args.data, "rb").read()
if len(raw) < 10 * (args.ctx + 2):
    sys.exit(f"torch_qat_baseline: error: data file {args.data} is too small")
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = True
data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
n = int(0.9 * len(data))
train, val = data[:n].to(dev), data[n:].to(dev)
B, T, L, H, D, DROP = args.batch, args.ctx, args.layers, args.heads, args.dim, 0.2


class BitLinear(nn.Linear):
    """Latent fp weights; forward uses absmean-ternary weights and per-token int8 activations."""

    def forward(self, x):
        w = self.weight
        s = w.abs().mean().clamp(min=1e-5)
        wq = w + ((w / s).round().clamp(-1, 1) * s - w).detach()
        xs = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        xq = x + ((x * xs).round().clamp(-128, 127) / xs - x).detach()
        return F.linear(xq, wq, self.bias)


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1, s.n2 = nn.LayerNorm(D), nn.LayerNorm(D)
        s.qkv, s.o = BitLinear(D, 3 * D, bias=False), BitLinear(D, D, bias=False)
        s.f1, s.f2 = BitLinear(D, 4 * D, bias=False), BitLinear(4 * D, D, bias=False)
        s.drop = nn.Dropout(DROP)

    def forward(s, x):
        b, t, _ = x.shape
        q, k, v = s.qkv(s.n1(x)).view(b, t, 3, H, D // H).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=DROP if s.training else 0)
        x = x + s.drop(s.o(y.transpose(1, 2).reshape(b, t, D)))
        return x + s.drop(s.f2(F.gelu(s.f1(s.n2(x)))))


class LM(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb, s.pos = nn.Embedding(256, D), nn.Embedding(T, D)
        s.blocks = nn.ModuleList(Block() for _ in range(L))
        s.nf, s.head = nn.LayerNorm(D), nn.Linear(D, 256, bias=False)
        s.drop = nn.Dropout(DROP)

    def forward(s, idx, tgt):
        x = s.drop(s.emb(idx) + s.pos(torch.arange(idx.shape[1], device=idx.device)))
        for blk in s.blocks:
            x = blk(x)
        logits = s.head(s.nf(x)).float()
        return F.cross_entropy(logits.view(-1, 256), tgt.reshape(-1))


def batch(src, g):
    ix = torch.randint(len(src) - T - 1, (B,), device=dev, generator=g)
    chunk = src[ix[:, None] + torch.arange(T + 1, device=dev)]
    return chunk[:, :-1], chunk[:, 1:]


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


torch.manual_seed(1337)
g = torch.Generator(device=dev).manual_seed(1337)
model = LM().to(dev)
nparams = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
step_fn = model if args.no_compile else torch.compile(model)
amp = torch.autocast(dev.type, torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", torch.bfloat16, enabled=False)
total = args.warmup + args.iters


def train_step(it):
    lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * it / total)) if it > 100 else 1e-3 * max(it, 1) / 100
    for pg in opt.param_groups:
        pg["lr"] = lr
    x, y = batch(train, g)
    with amp:
        loss = step_fn(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


tw = time.perf_counter()
for it in range(args.warmup):
    train_step(it)
sync()
t0 = time.perf_counter()
cuda_ev = dev.type == "cuda"
marks = []
for it in range(args.warmup, total):
    if cuda_ev and (it - args.warmup) % 10 == 0:
        marks.append(torch.cuda.Event(enable_timing=True))
        marks[-1].record()
    loss = train_step(it)
if cuda_ev:
    marks.append(torch.cuda.Event(enable_timing=True))
    marks[-1].record()
sync()
dt = time.perf_counter() - t0
print(f"# warm-up: {args.warmup} steps in {t0 - tw:.1f} s (compilation included)", file=sys.stderr)
if len(marks) > 1:
    w = [marks[i].elapsed_time(marks[i + 1]) / min(10, args.iters - 10 * i) for i in range(len(marks) - 1)]
    print("# ms/step per 10-step window: " + " ".join(f"{x:.2f}" for x in w), file=sys.stderr)
tps = args.iters * B * T / dt
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
print(f"# {nparams} latent fp32 params (+2 AdamW moments each), final train loss {loss.item():.4f}", file=sys.stderr)
if args.eval:
    model.eval()
    gv = torch.Generator(device=dev).manual_seed(7)
    with torch.no_grad(), amp:
        v = sum(step_fn(*batch(val, gv)).item() for _ in range(20)) / 20
    print(f"# val {v:.4f} nats/byte", file=sys.stderr)
if args.profile > 0 and cuda_ev:
    try:
        from torch.profiler import profile, ProfilerActivity
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            tp = time.perf_counter()
            for it in range(args.profile):
                train_step(total + it)
            sync()
            tp = time.perf_counter() - tp
        kev = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
        kern = sum(e.time_range.elapsed_us() for e in kev) / 1000.0 / args.profile
        nk = len(kev) / args.profile
        print(f"# profile: {kern:.2f} ms of GPU kernels per step ({nk:.0f} kernels), wall {1000 * tp / args.profile:.2f} ms/step "
              f"under the profiler", file=sys.stderr)
    except Exception as e:  # the timing line below must still print
        print(f"# profile failed: {e}", file=sys.stderr)
print(f"QAT_BASELINE tokens_per_s={tps:.1f} step_ms={1000 * dt / args.iters:.2f} iters={args.iters} batch={B} ctx={T} "
      f"device={name.replace(' ', '_')}", flush=True)
