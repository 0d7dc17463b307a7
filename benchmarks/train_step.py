"""Samples/s of one ViT-B AV-MAE training step (forward, backward, AdamW) at the official shapes.

    python benchmarks/train_step.py                       # CPU: fp32 and bf16 autocast, batch 4
    python benchmarks/train_step.py --device cuda         # GPU: fp32/bf16 x eager/compile at --batch,
                                                          #      then the largest batch that fits
    python benchmarks/train_step.py --device cpu --batch 2 --steps 2 --threads 2

Shapes: image 224x224 (196 patches, 75% masked), log-mel 128x192 (96 patches, 80% masked), fusion
tokens (16, 8, 8), factorized fusion with attn_ratio 0.25 and mlp_ratio 1.0, decoders 512 wide,
8 deep, 16 heads (the released VGGSound model). Times are medians of ``--steps`` timed steps after
``--warmup`` untimed ones (compilation happens there); the process CPU time per step is printed too,
because on a shared CPU the wall time depends on the other load (with 1 thread, CPU time ~ the wall
time of an idle core). Output: Markdown rows for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from avfusion.models import build_model, encoder_config


def make_model(device: str) -> torch.nn.Module:
    enc = encoder_config("base", fusion_attn_ratio=0.25, fusion_mlp_ratio=1.0, num_fusion_tokens=(16, 8, 8))
    return build_model("pretrain", enc).to(device).train()


def make_step(model, precision: str, device: str, compile_: bool):
    run = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step(image, audio):
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = run(image, audio, generator=gen).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(model, precision: str, device: str, batch: int, steps: int, warmup: int, compile_: bool) -> dict:
    image = torch.randn(batch, 3, 224, 224, device=device)
    audio = torch.randn(batch, 1, 128, 192, device=device)
    step = make_step(model, precision, device, compile_)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(warmup):
        step(image, audio)
    sync(device)
    warm_s = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step(image, audio)
        sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    t = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"batch": batch, "ms": 1000 * t, "samples_s": batch / t, "warm_s": warm_s, "peak_gib": peak,
            "cpu_s": statistics.median(cpu_times)}


def fits(model, precision: str, batch: int) -> bool:
    try:
        measure(model, precision, "cuda", batch, steps=1, warmup=1, compile_=False)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        model.zero_grad(set_to_none=True)  # a failed backward may leave gradients behind
        torch.cuda.empty_cache()


def largest_batch(model, precision: str, start: int) -> int:
    """Double from ``start`` until a step runs out of memory, then bisect."""
    lo, hi = 0, start
    while fits(model, precision, hi):
        lo, hi = hi, hi * 2
    while hi - lo > max(1, lo // 16):  # within ~6%
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(model, precision, mid) else (lo, mid)
    return lo


def row(device_name: str, precision: str, compile_: bool, r: dict) -> str:
    peak = "" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.1f}"
    return (f"| {device_name} | {precision} | {'yes' if compile_ else 'no'} | {r['batch']} | {r['samples_s']:.2f} | "
            f"{r['ms']:.0f} | {r['cpu_s']:.1f} | {r['warm_s']:.1f} | {peak} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 4 on CPU, 64 on GPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-compile", action="store_true", help="GPU: skip the torch.compile rows")
    parser.add_argument("--no-max-batch", action="store_true", help="GPU: skip the largest-batch search")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (64 if device == "cuda" else 4)
    torch.manual_seed(0)
    model = make_model(device)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    print("| device | precision | compile | batch | samples/s | ms/step | process CPU s/step | warm-up s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    compiles = [False] + ([True] if device == "cuda" and not args.no_compile else [])
    for compile_ in compiles:
        for precision in args.precisions.split(","):
            r = measure(model, precision, device, batch, args.steps, args.warmup, compile_)
            print(row(name, precision, compile_, r), flush=True)
    if device == "cuda" and not args.no_max_batch:
        for precision in args.precisions.split(","):
            biggest = largest_batch(model, precision, batch)
            r = measure(model, precision, device, biggest, args.steps, args.warmup, False)
            print(row(name, precision, False, r) + " largest batch that fits", flush=True)


if __name__ == "__main__":
    main()
