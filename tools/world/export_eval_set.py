#!/usr/bin/env python3
"""Writes a held-out set of the toy world for the engine's tests
(tests/worker/engine/world/): scenes no model was trained on, in every style,
with their labels, and the world's caption words with the tokens world.py's
tokenizer gives them (the engine's tokenizer must give the same).

  images        U8  (N, 32, 32, 3)
  style, shape, colour   I64 (N)   indices into world.STYLES / SHAPES / COLOURS
  text_tokens   I64 (T, 77)        SOT ... EOT, zero padded
metadata: "texts" (JSON list, row order of text_tokens), "styles", "shapes",
"colours" (JSON lists).

Usage: /usr/bin/python3 tools/world/export_eval_set.py --out eval.safetensors [--scenes 100]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from safetensors_writer import write_safetensors  # noqa: E402

# Far from the training scripts' seeds (1, 2, 3 and their held-out 10002, 20003).
EVAL_SEED = 777_000


def caption_texts():
    """Every text the world's captions and the method's templates make."""
    templates = world.load_templates()
    contents = [f"{c} {s}" for c in world.COLOURS for s in world.SHAPES]
    texts = set()
    for style in world.STYLES:
        noun = world.STYLE_NOUNS[style]
        texts.update(t.format(style) for t in templates)
        texts.update(f.format(noun=noun, style=style) for f in world.STYLE_FORMS)
        for content in contents[:3]:
            texts.update(f.format(noun=noun, content=content, style=style) for f in world.FULL_FORMS)
    texts.update(f"a {c}" for c in contents)
    return sorted(texts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--scenes", type=int, default=100, help="scenes, each in every style")
    args = p.parse_args()
    rng = np.random.default_rng(EVAL_SEED)
    images, labels = [], []
    for _ in range(args.scenes):
        scene = world.random_scene(rng)
        texture = np.random.default_rng(rng.integers(1 << 62))
        for k, style in enumerate(world.STYLES):
            images.append(world.render(scene, style, texture))
            labels.append((k, world.SHAPES.index(scene.shape), world.COLOURS.index(scene.colour)))
    images = (np.clip(np.stack(images), 0, 1) * 255 + 0.5).astype(np.uint8)
    labels = np.array(labels, dtype=np.int64)
    texts = caption_texts()
    tokens = world.Tokenizer().tokens(texts)
    write_safetensors(args.out, {
        "images": torch.from_numpy(images), "style": torch.from_numpy(labels[:, 0].copy()),
        "shape": torch.from_numpy(labels[:, 1].copy()), "colour": torch.from_numpy(labels[:, 2].copy()),
        "text_tokens": torch.from_numpy(tokens)},
        {"texts": json.dumps(texts), "styles": json.dumps(world.STYLES),
         "shapes": json.dumps(world.SHAPES), "colours": json.dumps(world.COLOURS)})
    print(f"wrote {args.out}: {len(images)} images, {len(texts)} texts")


if __name__ == "__main__":
    main()
