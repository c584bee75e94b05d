#!/usr/bin/env python3
"""The U-Net training step of `cargo bench --bench unet`, in PyTorch, for a side-by-side
timing on the same machine. Not part of segfeat: a yardstick.

The network is segfeat's (src/nn/unet.rs): four levels of two zero-padded 3x3
convolutions + ELU with 2x2 max pooling, a bottom level at 16n channels, an expanding path
that upsamples by repetition, concatenates (upsampled channels first, then the skip) and
applies two 3x3 convolutions + ELU, and a final 1x1 convolution to 6 label logits. The
step is the same: forward, class-weighted softmax cross-entropy, backward and Adam (lr
1e-3, b1 0.9, b2 0.999, eps 1e-8) on a batch of single-channel images. The parameter
count is printed so the Rust bench can check that both networks are the same size.

Timing: wall clock of whole steps, each ending by reading the loss back (`loss.item()`,
which on CUDA also synchronises), best of --reps after one warm-up step, as the Rust bench
does. On the CPU it uses as many threads as the machine has cores; on CUDA TF32 is off, so
both sides compute in fp32, and the peak memory of a step is reported.

With --depth D the network is the 3-D U-Net (torch.nn.Conv3d 3x3x3 and 1x1x1, max pooling
and nearest upsampling by (f, 2, 2) with f the --depth-pool factor of each level) on
volumes of D slices, as segfeat's with `--depth`.

Run:
    python3 benches/torch_reference.py --sizes 64,128 --channels 16 --batch 10
    python3 benches/torch_reference.py --depth 16 --depth-pool 2,2,2,1 --sizes 64 --channels 8 --batch 2
    python3 benches/torch_reference.py --device cuda --sizes 256
Install PyTorch (into a virtual environment, for example):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch
    SEGFEAT_TORCH_PYTHON=.venv-torch/bin/python cargo bench --bench unet

Output: one line per size, `torch size=S ms=T params=P peak_mib=M threads=K device=D`,
which the Rust bench parses; a human-readable header goes first.
"""

import argparse
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="128,256", help="input sizes, comma-separated, each divisible by 16")
    p.add_argument("--channels", type=int, default=16, help="n, the first level's channels")
    p.add_argument("--labels", type=int, default=6)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--reps", type=int, default=2, help="timed steps after one warm-up; the best is reported")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    p.add_argument("--depth", type=int, default=0, help="volumes of this many slices (the 3-D U-Net); 0: 2-D images")
    p.add_argument("--depth-pool", default="2,2,2,1", help="with --depth: the depth factor of each of the four poolings")
    a = p.parse_args()
    try:
        a.depth_pool = [int(f) for f in a.depth_pool.split(",")]
    except ValueError:
        p.error(f"--depth-pool must be four factors like 2,2,1,1, got {a.depth_pool!r}")
    if len(a.depth_pool) != 4 or any(f not in (1, 2) for f in a.depth_pool):
        p.error(f"--depth-pool must be four factors of 1 or 2, got {a.depth_pool}")
    if a.depth:
        prod = a.depth_pool[0] * a.depth_pool[1] * a.depth_pool[2] * a.depth_pool[3]
        if a.depth < 0 or a.depth % prod:
            p.error(f"--depth {a.depth} must be divisible by the depth poolings' product {prod}")
    try:
        a.sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes must be integers separated by commas, got {a.sizes!r}")
    for s in a.sizes:
        if s <= 0 or s % 16:
            p.error(f"every size must be a positive multiple of 16 (four 2x2 poolings), got {s}")
    if a.channels < 1 or a.batch < 1 or a.reps < 1 or a.threads < 1:
        p.error("--channels, --batch, --reps and --threads must be at least 1")
    return a


def main():
    a = parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        sys.exit(
            "torch_reference.py: PyTorch is not installed for this Python "
            f"({sys.executable}); install it with `python3 -m venv .venv-torch && "
            ".venv-torch/bin/pip install torch`"
        )

    three_d = a.depth > 0
    Conv = nn.Conv3d if three_d else nn.Conv2d
    # The pooling (and upsampling) factor of each level: (f, 2, 2) for volumes.
    factors = [(f, 2, 2) for f in a.depth_pool] if three_d else [2] * 4

    class Unet(nn.Module):
        def __init__(self, n, labels):
            super().__init__()
            self.enc = nn.ModuleList()
            c = 1
            for level in range(5):
                w = n << level
                self.enc.append(nn.ModuleList([Conv(c, w, 3, padding=1), Conv(w, w, 3, padding=1)]))
                c = w
            self.dec = nn.ModuleList()
            for level in reversed(range(4)):
                w = n << level
                self.dec.append(nn.ModuleList([Conv(c + w, w, 3, padding=1), Conv(w, w, 3, padding=1)]))
                c = w
            self.out = Conv(c, labels, 1)
            # He normal weights and zero biases, as segfeat initialises them.
            for m in self.modules():
                if isinstance(m, Conv):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            skips = []
            pool = F.max_pool3d if three_d else F.max_pool2d
            for level, (c1, c2) in enumerate(self.enc):
                if level > 0:
                    x = pool(x, factors[level - 1])
                x = F.elu(c2(F.elu(c1(x))))
                if level < 4:
                    skips.append(x)
            for level, (c1, c2) in zip(reversed(range(4)), self.dec):
                up = F.interpolate(x, scale_factor=factors[level], mode="nearest")
                x = torch.cat([up, skips.pop()], dim=1)
                x = F.elu(c2(F.elu(c1(x))))
            return self.out(x)

    dev = torch.device(a.device)
    if a.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("torch_reference.py: --device cuda, but this PyTorch sees no CUDA GPU")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # Let cuDNN pick its fastest algorithms (during the warm-up step, which is not
        # timed): the yardstick is PyTorch at its best.
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
    else:
        torch.set_num_threads(a.threads)
        name = "CPU"
    torch.manual_seed(1)
    print(
        f"# PyTorch {torch.__version__} on {name} ({a.device}, {torch.get_num_threads()} threads), "
        f"{'3-D U-Net (Conv3d, depth %d pooled %s)' % (a.depth, a.depth_pool) if three_d else 'U-Net'} "
        f"n={a.channels}, batch {a.batch}: forward + weighted CE + backward + Adam, "
        f"best of {a.reps} after a warm-up",
        flush=True,
    )
    for size in a.sizes:
        net = Unet(a.channels, a.labels).to(dev)
        params = sum(p.numel() for p in net.parameters())
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        spatial = (a.depth, size, size) if three_d else (size, size)
        x = torch.rand(a.batch, 1, *spatial, device=dev)
        y = torch.randint(0, a.labels, (a.batch, *spatial), device=dev)
        w = torch.rand(a.labels, device=dev) + 0.5
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        best = float("inf")
        for rep in range(a.reps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y, weight=w)
            loss.backward()
            opt.step()
            loss.item()
            secs = time.perf_counter() - t0
            if rep > 0:
                best = min(best, secs)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if a.device == "cuda" else float("nan")
        print(
            f"torch size={size} ms={best * 1e3:.1f} params={params} peak_mib={peak:.1f} "
            f"threads={torch.get_num_threads()} device={a.device}",
            flush=True,
        )


if __name__ == "__main__":
    main()
