#!/usr/bin/env python3
"""Trains the toy world's CLIP on captioned scenes of every style.

Contrastive, as CLIP is, with one change for a world whose captions repeat:
an image and a caption are a positive pair whenever the caption says nothing
false about the image (a "sketch" caption matches every sketch in the batch),
and the cross-entropy targets spread evenly over the positives. Captions
(world.caption) are full descriptions, the style alone (also inside the 79
templates the method averages over) or the content alone.

Writes OpenAI-named tensors (the engine loads them as ViT-B/32) and a JSON of
zero-shot accuracies on held-out scenes.

Usage: /usr/bin/python3 tools/world/train_clip.py --out world-clip.safetensors
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
from clip import Clip  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from safetensors_writer import write_safetensors  # noqa: E402

CONFIG = {"embed": 64, "resolution": 32, "patch": 8, "vision_width": 64, "vision_layers": 3,
          "text_width": 64, "text_layers": 3}


def render_set(count, seed):
    """`count` scenes, each in every style: images (count*5, 3, 32, 32) in
    [0, 1], and per image its style index, content string and scene."""
    rng = np.random.default_rng(seed)
    images, styles, scenes = [], [], []
    for _ in range(count):
        scene = world.random_scene(rng)
        texture = np.random.default_rng(rng.integers(1 << 62))
        for k, style in enumerate(world.STYLES):
            images.append(world.render(scene, style, texture))
            styles.append(k)
            scenes.append(scene)
    x = np.stack(images).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), np.array(styles), scenes


class Texts:
    """Tokenised texts, cached; batches cut to their longest row."""

    def __init__(self):
        self.tok = world.Tokenizer()
        self.cache = {}

    def __call__(self, texts):
        rows = []
        for t in texts:
            if t not in self.cache:
                self.cache[t] = self.tok.tokens([t])[0]
            rows.append(self.cache[t])
        tokens = torch.from_numpy(np.stack(rows))
        length = int((tokens == world.Tokenizer.EOT).nonzero()[:, 1].max()) + 1
        return tokens[:, :length]


def augment(x, gen):
    """Small shifts and noise, so that the CLIP also reads a generator's
    slightly imperfect pictures."""
    shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=shift, dims=(2, 3))
    return (x + 0.02 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


@torch.no_grad()
def text_features(model, texts, encode):
    return F.normalize(model.encode_text(encode(texts)), dim=-1)


@torch.no_grad()
def zero_shot(model, encode, images, styles, scenes, templates):
    """Accuracy of style (templates averaged, as the method builds texts) and of
    content (the 24 "a {colour} {shape}" captions) on held-out images."""
    feats = F.normalize(model.encode_image(images), dim=-1)
    style_feats = torch.stack([text_features(model, [t.format(s) for t in templates], encode).mean(0)
                               for s in world.STYLES])
    style_pred = (feats @ style_feats.t()).argmax(1).numpy()
    contents = [f"{c} {s}" for c in world.COLOURS for s in world.SHAPES]
    content_feats = text_features(model, [f"a {c}" for c in contents], encode)
    content_pred = (feats @ content_feats.t()).argmax(1).numpy()
    truth = np.array([contents.index(s.content()) for s in scenes])
    per_style = {}
    for k, style in enumerate(world.STYLES):
        m = styles == k
        per_style[style] = {"style": float((style_pred[m] == k).mean()),
                            "content": float((content_pred[m] == truth[m]).mean())}
    return {"style_accuracy": float((style_pred == styles).mean()),
            "content_accuracy": float((content_pred == truth).mean()),
            "chance": {"style": 1 / len(world.STYLES), "content": 1 / len(contents)},
            "images": int(len(styles)), "per_style": per_style}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--report", help="JSON of zero-shot accuracies on held-out scenes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--scenes", type=int, default=3000, help="training scenes (x5 styles)")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--cache", help="an .npz the rendered training images are kept in")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    templates = world.load_templates()

    t0 = time.time()
    if args.cache and os.path.exists(args.cache):
        with np.load(args.cache, allow_pickle=True) as f:
            images, styles = torch.from_numpy(f["images"]), f["styles"]
            scenes = [world.Scene(*s) for s in f["scenes"]]
    else:
        images, styles, scenes = render_set(args.scenes, args.seed)
        if args.cache:
            np.savez(args.cache, images=images.numpy(), styles=styles,
                     scenes=np.array([(s.shape, s.colour, s.cx, s.cy, s.radius, s.background)
                                      for s in scenes], dtype=object))
    held_images, held_styles, held_scenes = render_set(200, 10_000 + args.seed)
    print(f"{len(styles)} training images rendered in {time.time() - t0:.0f} s", flush=True)

    model = Clip(**CONFIG)
    encode = Texts()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        warm = min(1.0, step / 200)
        for group in opt.param_groups:
            group["lr"] = args.lr * warm * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        idx = torch.randint(0, len(styles), (args.batch,), generator=gen).numpy()
        said = [world.caption(scenes[i], world.STYLES[styles[i]], rng, templates) for i in idx]
        texts = [t for t, _, _ in said]
        match = torch.tensor([[(s is None or s == world.STYLES[styles[i]]) and
                               (c is None or c == scenes[i].content()) for _, s, c in said]
                              for i in idx], dtype=torch.float32)
        img = F.normalize(model.encode_image(augment(images[idx], gen)), dim=-1)
        txt = F.normalize(model.encode_text(encode(texts)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
        loss = (-(match / match.sum(1, keepdim=True)) * F.log_softmax(logits, 1)).sum(1).mean() / 2 + \
               (-(match / match.sum(0, keepdim=True)) * F.log_softmax(logits, 0)).sum(0).mean() / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == 1:
            print(f"step {step}/{args.steps} loss {loss.item():.4f} scale "
                  f"{model.logit_scale.exp().item():.1f} {(time.time() - t0) / step:.3f} s/step",
                  flush=True)
        if step % 500 == 0 or step == args.steps:
            report = zero_shot(model, encode, held_images, held_styles, held_scenes, templates)
            print(f"zero-shot: style {report['style_accuracy']:.3f} content "
                  f"{report['content_accuracy']:.3f}", flush=True)

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["logit_scale"] = state["logit_scale"].reshape([])
    meta = {"format": "restyle-world-clip", "trained_by": "tools/world/train_clip.py",
            "settings": json.dumps(vars(args), sort_keys=True),
            "zero_shot": json.dumps({k: report[k] for k in ("style_accuracy", "content_accuracy")})}
    write_safetensors(args.out, state, meta)
    print(f"wrote {args.out} ({len(state)} tensors)")
    if args.report:
        report["settings"] = vars(args)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
