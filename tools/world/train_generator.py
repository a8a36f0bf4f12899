#!/usr/bin/env python3
"""Trains the toy world's StyleGAN2 on the "photo" style (tools/world/README.md).

The generator learns the world's latent map: G(z) = render(scene_from_latent(z),
"photo") for z ~ N(0, I) (world.py). That is a regression on pairs the world
draws, not an adversarial game: it trains in well under an hour on two cores, it is
reproducible from its seed, and since the map sends z to scenes with the
world's own distribution, so does a generator that learns it. The result is an
ordinary rosinality-layout StyleGAN2 (mapping network, modulated convolutions,
noise inputs), which is all the adaptation methods assume of a source
generator.

The shipped generator took three runs, each initialised from the last
(worker/engine/world/data/README.md): every position of the world first
(--position-spread 1), then the photos' positions near the middle with the
target's edges weighted (--edge-weight 2), then a lower learning rate.

Usage: /usr/bin/python3 tools/world/train_generator.py --out world-sg2.safetensors
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
from stylegan2 import LR_MUL, Generator  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from safetensors_writer import read_safetensors, write_safetensors  # noqa: E402

CONFIG = {"size": 32, "style_dim": world.LATENT_DIM, "n_mlp": 4,
          "channels": {4: 128, 8: 128, 16: 64, 32: 32}}


def make_pairs(count, seed, spread=world.POSITION_SPREAD):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((count, world.LATENT_DIM)).astype(np.float32)
    images = np.stack([world.render(world.scene_from_latent(v, spread), "photo") for v in z])
    return z, images.transpose(0, 3, 1, 2) * 2 - 1  # NCHW in [-1, 1]


def write_samples(g, path, spread=world.POSITION_SPREAD):
    """Targets and the generator's images of the same 32 latents, row by row."""
    z, target = make_pairs(32, 999, spread)
    with torch.no_grad():
        out = g(torch.from_numpy(z)).clamp(-1, 1).numpy().transpose(0, 2, 3, 1) * 0.5 + 0.5
    target = target.transpose(0, 2, 3, 1) * 0.5 + 0.5
    rows = np.concatenate([np.concatenate([target[i:i + 8], out[i:i + 8]]) for i in range(0, 32, 8)])
    world.write_png(path, world.grid(rows, 8, scale=3))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pairs", type=int, default=60000, help="distinct (z, image) pairs")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--position-spread", type=float, default=world.POSITION_SPREAD,
                   help="share of the world's positions the photos use, around the centre")
    p.add_argument("--init", help="a generator file (this script's) to go on training from")
    p.add_argument("--edge-weight", type=float, default=0.0,
                   help="extra loss weight on the target's edges (shapes are learned last)")
    p.add_argument("--cache", help="an .npz the rendered pairs are kept in (and read from)")
    p.add_argument("--samples", help="PNG grid of samples (and their targets) at the end")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.time()
    if args.cache and os.path.exists(args.cache):
        with np.load(args.cache) as f:
            z_all, x_all = f["z"], f["x"]
    else:
        z_all, x_all = make_pairs(args.pairs, args.seed, args.position_spread)
        if args.cache:
            np.savez(args.cache, z=z_all, x=x_all)
    z_all, x_all = torch.from_numpy(z_all), torch.from_numpy(np.ascontiguousarray(x_all))
    print(f"{args.pairs} pairs rendered in {time.time() - t0:.0f} s", flush=True)

    g = Generator(CONFIG["size"], CONFIG["style_dim"], CONFIG["n_mlp"], CONFIG["channels"])
    if args.init:
        g.load_state_dict(read_safetensors(args.init))
    mapping = [p for n, p in g.named_parameters() if n.startswith("style.")]
    synthesis = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    # The mapping's weights are stored divided by LR_MUL (as in the reference);
    # a learning rate divided by it too lets the mapping learn the latent map
    # at the synthesis network's pace.
    opt = torch.optim.Adam([{"params": synthesis, "lr": args.lr},
                            {"params": mapping, "lr": args.lr / LR_MUL}], betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        frac = step / args.steps
        for group, base in zip(opt.param_groups, (args.lr, args.lr / LR_MUL)):
            group["lr"] = base * (1.0 if frac < 0.7 else 0.3 if frac < 0.9 else 0.1)
        idx = torch.randint(0, args.pairs, (args.batch,), generator=gen)
        out = g(z_all[idx])
        target = x_all[idx]
        err = (out - target).abs() + (out - target) ** 2
        if args.edge_weight > 0:
            edges = (target[:, :, 1:, :] - target[:, :, :-1, :]).abs().mean(1, keepdim=True)
            edges = F.pad(edges, (0, 0, 0, 1)) + F.pad(
                (target[:, :, :, 1:] - target[:, :, :, :-1]).abs().mean(1, keepdim=True), (0, 1))
            err = err * (1 + args.edge_weight * edges / edges.mean())
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == 1:
            print(f"step {step}/{args.steps} loss {loss.item():.4f} "
                  f"{(time.time() - t0) / step:.3f} s/step", flush=True)
        if args.samples and step % 500 == 0:
            write_samples(g, args.samples, args.position_spread)
            save(g, args, loss, args.out + f".step{step}")

    save(g, args, loss, args.out)
    print(f"wrote {args.out}")
    if args.samples:
        write_samples(g, args.samples, args.position_spread)


def save(g, args, loss, path):
    state = {k: v.detach().clone() for k, v in g.state_dict().items()}
    meta = {"format": "restyle-world-stylegan2", "arch": "rosinality", "size": "32",
            "style_dim": str(CONFIG["style_dim"]), "n_mlp": str(CONFIG["n_mlp"]),
            "trained_by": "tools/world/train_generator.py",
            "settings": json.dumps(vars(args), sort_keys=True), "final_loss": f"{loss.item():.5f}"}
    write_safetensors(path, state, meta)


if __name__ == "__main__":
    main()
