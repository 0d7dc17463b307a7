"""Cost of the exact linear-cost pairwise attention against the materialised pairs, and of our
attention kernel against plain matmul-softmax attention in a ViT-B pretraining step.

    python benchmarks/fusion_cost.py [--device cpu|cuda] [--repeats 3] [--skip-vitb]

Times are medians over repeats, measured in this process with both variants interleaved. Peak
memory of one forward+backward, also in this process: on CUDA torch.cuda.max_memory_allocated; on
the CPU (Linux) the growth of the resident-set high-water mark, reset before each measurement
(the CPU allocator has no peak counter). Results are printed as Markdown tables for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from avfusion.models import AVMAE, EarlyFusionEncoder, encoder_config
from avfusion.models.fusion import DenseInteraction
from avfusion.models.layers import set_attention_impl
from avfusion.models.pairwise_reference import materialised_dense

D, HEADS, BATCH, RATIO, N_FUSION = 768, 12, 8, 0.25, 32
SIZES = [(196, 96), (784, 384), (1568, 96)]
LIMIT_BYTES = 16 * 2**30


def materialised_bytes(nv: int, na: int) -> int:
    """Rough peak of the materialised block: pairs (2D) plus their gradient and the repeated halves,
    keys/values, the attention matrix, all float32."""
    pairs = BATCH * nv * na
    return 4 * (pairs * 2 * D * 3 + pairs * 2 * int(D * RATIO) * 2 + BATCH * HEADS * N_FUSION * nv * na * 2)


def step(block, variant, m, image, audio):
    out = block(m, image, audio) if variant == "ours" else materialised_dense(block, m, image, audio)
    out.square().mean().backward()


def inputs(nv, na, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randn(BATCH, n, D, generator=g).to(device).requires_grad_(True) for n in (N_FUSION, nv, na)]


def timed(fn, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_bytes(variant, nv, na, device) -> int:
    """Peak memory added by one forward+backward, measured in this process."""
    torch.manual_seed(0)
    block = DenseInteraction(D, HEADS, RATIO).to(device)
    m, image, audio = inputs(nv, na, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(block, variant, m, image, audio)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # CPU: reset the kernel's resident-set high-water mark (Linux: clear_refs 5), then read VmHWM.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    base = _proc_status_kib("VmRSS")
    step(block, variant, m, image, audio)
    return (_proc_status_kib("VmHWM") - base) * 1024


def fusion_block_rows(device, repeats):
    rows = []
    for nv, na in SIZES:
        torch.manual_seed(0)
        block = DenseInteraction(D, HEADS, RATIO).to(device)
        m, image, audio = inputs(nv, na, device)
        variants = ["ours"] + (["materialised"] if materialised_bytes(nv, na) <= LIMIT_BYTES else [])
        # memory first, ours first, before timing loops leave freed memory behind for reuse
        peaks = {v: peak_bytes(v, nv, na, device) for v in variants}
        times = {v: [] for v in variants}
        step(block, "ours", m, image, audio)  # warm-up
        for _ in range(repeats):
            for v in variants:
                times[v].append(timed(lambda: step(block, v, m, image, audio), device))
        result = {"size": (nv, na), "ours_s": statistics.median(times["ours"]), "ours_bytes": peaks["ours"]}
        if "materialised" in variants:
            result["mat_s"] = statistics.median(times["materialised"])
            result["mat_bytes"] = peaks["materialised"]
        else:
            result["skipped"] = f"materialised needs ~{materialised_bytes(nv, na) / 2**30:.0f} GB > 16 GB"
        rows.append(result)
        print(_fusion_row(result), flush=True)
    return rows


def _fusion_row(r) -> str:
    nv, na = r["size"]
    ours = f"{r['ours_s'] * 1e3:.1f} ms / {r['ours_bytes'] / 2**20:.0f} MiB"
    if "skipped" in r:
        return f"| ({nv}, {na}) | {ours} | skipped: {r['skipped']} | - | - |"
    mat = f"{r['mat_s'] * 1e3:.1f} ms / {r['mat_bytes'] / 2**20:.0f} MiB"
    return (f"| ({nv}, {na}) | {ours} | {mat} | {r['mat_s'] / r['ours_s']:.1f}x | "
            f"{r['mat_bytes'] / max(r['ours_bytes'], 1):.1f}x |")


def vitb_rows(device, repeats):
    """One AV-MAE pretraining step at the official ViT-B shapes: our attention (SDPA) vs math."""
    torch.manual_seed(0)
    model = AVMAE(EarlyFusionEncoder(encoder_config("base"))).to(device)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(4, 3, 224, 224, generator=g).to(device)
    audio = torch.randn(4, 1, 128, 192, generator=g).to(device)
    noise = (torch.rand(4, 196, generator=g).to(device), torch.rand(4, 96, generator=g).to(device))

    def train_step():
        model.zero_grad(set_to_none=True)
        model(image, audio, *noise).loss.backward()

    times = {"sdpa": [], "math": []}
    cpu = {"sdpa": [], "math": []}  # process CPU time: less sensitive than wall time to other load
    for impl in times:  # one untimed step each (allocator, caches)
        set_attention_impl(model, impl)
        train_step()
    for r in range(repeats):
        # alternate the order (ABBA...) so that a drift of the machine's speed hits both alike
        for impl in (("sdpa", "math") if r % 2 == 0 else ("math", "sdpa")):
            set_attention_impl(model, impl)
            start = time.process_time()
            times[impl].append(timed(train_step, device))
            cpu[impl].append(time.process_time() - start)
    ours, plain = statistics.median(times["sdpa"]), statistics.median(times["math"])
    ours_cpu, plain_cpu = statistics.median(cpu["sdpa"]), statistics.median(cpu["math"])
    # paired ratios: each repeat's plain step against its own neighbouring SDPA step
    paired = sorted(p / o for p, o in zip(times["math"], times["sdpa"]))
    spread = f"paired {statistics.median(paired):.2f}x, range {paired[0]:.2f}-{paired[-1]:.2f}x over {repeats}"
    print(f"| ViT-B AV-MAE step, batch 4, wall, median | {ours * 1e3:.0f} ms | {plain * 1e3:.0f} ms | "
          f"{plain / ours:.2f}x ({spread}) |")
    best_ours, best_plain = min(times["sdpa"]), min(times["math"])
    print(f"| ViT-B AV-MAE step, batch 4, wall, fastest of {repeats} | {best_ours * 1e3:.0f} ms | "
          f"{best_plain * 1e3:.0f} ms | {best_plain / best_ours:.2f}x |")
    print(f"| ViT-B AV-MAE step, batch 4, CPU time, median | {ours_cpu * 1e3:.0f} ms | {plain_cpu * 1e3:.0f} ms | "
          f"{plain_cpu / ours_cpu:.2f}x |", flush=True)
    return ours, plain


def attention_rows(device, repeats):
    """The attention kernels alone at the step's shapes (forward + backward), SDPA against plain."""
    from avfusion.models.layers import attend

    shapes = {"encoder streams (12 heads, 81 tokens, head 64)": (4, 12, 81, 64),
              "decoders (16 heads, 228 tokens, head 32)": (4, 16, 228, 32)}
    for name, (b, h, n, d) in shapes.items():
        g = torch.Generator().manual_seed(0)
        # the layout the qkv projection produces: (B, N, H, d) in memory, seen as (B, H, N, d)
        q, k, v = (torch.randn(b, n, h, d, generator=g).to(device).transpose(1, 2).requires_grad_(True)
                   for _ in range(3))
        best = {}
        for impl in ("sdpa", "math"):
            times = [timed(lambda: attend(q, k, v, impl=impl).sum().backward(), device) for _ in range(repeats)]
            best[impl] = min(times)
        print(f"| attention only, {name}, fastest of {repeats} | {best['sdpa'] * 1e3:.1f} ms | "
              f"{best['math'] * 1e3:.1f} ms | {best['math'] / best['sdpa']:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vitb", action="store_true", help="only the fusion-block comparison")
    parser.add_argument("--skip-fusion", action="store_true", help="only the ViT-B step comparison")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {args.device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not args.skip_fusion:
        print("\nDense fusion block, D=768, 12 heads, batch 8, forward+backward (median time / peak memory)\n")
        print("| (N_image, N_audio) | ours (linear cost) | materialised pairs | time ratio | memory ratio |")
        print("|---|---|---|---|---|")
        fusion_block_rows(args.device, args.repeats)
    if not args.skip_vitb:
        print("\n| step | ours (SDPA) | plain matmul-softmax | plain / ours |")
        print("|---|---|---|---|")
        vitb_rows(args.device, args.repeats)
        attention_rows(args.device, max(20, args.repeats))


if __name__ == "__main__":
    main()
