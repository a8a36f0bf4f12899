#!/usr/bin/env python3
"""Trains the toy world's judge: a small convolutional classifier, not CLIP,
that tells an image's style, shape and colour. It is the referee of the
adaptation experiments (tools/world/evaluate.py) and of the quality report of
jobs run in this world (worker/engine/world/judge.h).

Architecture (the tensor names the engine reads):
  conv{1,2,3}.{weight,bias}  3x3, padding 1, ReLU, 2x2 max-pool: 3->32->64->64
  fc.{weight,bias}           1024 -> 128, ReLU (the judge's features)
  style.{weight,bias}, shape.{weight,bias}, colour.{weight,bias}   the three heads
Input: (N, 3, 32, 32) in [0, 1].

Usage: /usr/bin/python3 tools/world/train_judge.py --out world-judge.safetensors
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from safetensors_writer import write_safetensors  # noqa: E402


class Judge(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.style = nn.Linear(128, len(world.STYLES))
        self.shape = nn.Linear(128, len(world.SHAPES))
        self.colour = nn.Linear(128, len(world.COLOURS))

    def features(self, x):
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x):
        f = self.features(x)
        return self.style(f), self.shape(f), self.colour(f)


def labelled_set(count, seed):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        scene = world.random_scene(rng)
        style = int(rng.integers(len(world.STYLES)))
        texture = np.random.default_rng(rng.integers(1 << 62))
        images.append(world.render(scene, world.STYLES[style], texture))
        labels.append((style, world.SHAPES.index(scene.shape), world.COLOURS.index(scene.colour)))
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))
    return x, torch.tensor(labels)


def augment(x, gen):
    """Shifts, blur and noise: a generator's pictures are softer than the
    renderer's, and the judge must not care."""
    shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=shift, dims=(2, 3))
    if torch.rand(1, generator=gen).item() < 0.5:
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    scale = 0.03 * torch.rand(1, generator=gen).item()
    return (x + scale * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def accuracy(judge, x, y):
    with torch.no_grad():
        heads = judge(x)
    return {name: float((h.argmax(1) == y[:, i]).float().mean())
            for i, (name, h) in enumerate(zip(("style", "shape", "colour"), heads))}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--report", help="JSON of held-out accuracies")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    x, y = labelled_set(args.images, args.seed)
    hx, hy = labelled_set(2000, 20_000 + args.seed)
    print(f"{args.images} images rendered in {time.time() - t0:.0f} s", flush=True)
    judge = Judge()
    opt = torch.optim.Adam(judge.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        idx = torch.randint(0, len(y), (args.batch,), generator=gen)
        heads = judge(augment(x[idx], gen))
        loss = sum(F.cross_entropy(h, y[idx, i]) for i, h in enumerate(heads))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.4f} held-out {accuracy(judge, hx, hy)}", flush=True)
    report = accuracy(judge, hx, hy)
    write_safetensors(args.out, {k: v.detach().clone() for k, v in judge.state_dict().items()},
                      {"format": "restyle-world-judge", "trained_by": "tools/world/train_judge.py",
                       "styles": json.dumps(world.STYLES), "shapes": json.dumps(world.SHAPES),
                       "colours": json.dumps(world.COLOURS),
                       "settings": json.dumps(vars(args), sort_keys=True),
                       "held_out_accuracy": json.dumps(report)})
    print(f"wrote {args.out}: held-out accuracy {report}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"held_out_accuracy": report, "images": 2000, "settings": vars(args)}, f,
                      indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
