#!/usr/bin/env python3
"""Convert a rosinality stylegan2-pytorch checkpoint (.pt) to safetensors.

Usage: python3 tools/convert_stylegan2.py CHECKPOINT.pt OUT.safetensors [--key g_ema]

The checkpoint is a torch.save'd dict holding the generator state dict under
"g_ema" (as train.py and convert_weight.py write it; both the legacy and the
zip serialization are read). Every tensor of that state dict is written as
float32 under its original name (style.N.*, input.input, conv1.*, to_rgb1.*,
convs.N.*, to_rgbs.N.*, noises.noise_N). __metadata__ records arch, size,
style_dim, n_mlp, channel_multiplier (when it can be known) and, when the
checkpoint has one, latent_avg as a JSON list of floats.

This is the only place a pickle is read; Restyle's C++ side reads the
safetensors output only. Run it once, on a checkpoint you trust.
"""
import argparse
import json
import sys

import torch

from safetensors_writer import write_safetensors


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(path, map_location="cpu")


def generator_state(ckpt, key):
    if isinstance(ckpt, dict) and key in ckpt:
        return ckpt[key]
    if isinstance(ckpt, dict) and "style.1.weight" in ckpt:
        return ckpt  # a bare generator state dict
    keys = list(ckpt.keys()) if isinstance(ckpt, dict) else type(ckpt).__name__
    raise SystemExit(f"no generator state dict under '{key}' (checkpoint has {keys})")


def infer_metadata(state, ckpt):
    style_dim = state["style.1.weight"].shape[1]
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in state:
        n_mlp += 1
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in state:
        n_rgbs += 1
    size = 4 << n_rgbs
    meta = {
        "arch": "rosinality-stylegan2",
        "size": str(size),
        "style_dim": str(style_dim),
        "n_mlp": str(n_mlp),
    }
    args = ckpt.get("args") if isinstance(ckpt, dict) else None
    if args is not None and hasattr(args, "channel_multiplier"):
        meta["channel_multiplier"] = str(args.channel_multiplier)
    elif size >= 64:
        # channels at 64x64 = 256 * channel_multiplier (convs.6 outputs 64x64)
        ch64 = state["convs.6.conv.weight"].shape[1]
        if ch64 % 256 == 0:
            meta["channel_multiplier"] = str(ch64 // 256)
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt, dict) else None
    if latent_avg is not None:
        values = torch.as_tensor(latent_avg).detach().float().reshape(-1).tolist()
        if len(values) != style_dim:
            raise SystemExit(f"latent_avg has {len(values)} values, style_dim is {style_dim}")
        meta["latent_avg"] = json.dumps([float(f"{v:.9g}") for v in values])
    return meta


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--key", default="g_ema", help="state dict entry to convert (default g_ema)")
    a = p.parse_args(argv)
    ckpt = load_checkpoint(a.checkpoint)
    state = generator_state(ckpt, a.key)
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if "style.1.weight" not in tensors or "input.input" not in tensors:
        raise SystemExit("not a rosinality StyleGAN2 generator state dict")
    meta = infer_metadata(tensors, ckpt)
    write_safetensors(a.output, {k: v.to(torch.float32) for k, v in tensors.items()}, meta)
    print(f"wrote {a.output}: {len(tensors)} tensors, " +
          ", ".join(f"{k}={v}" for k, v in meta.items() if k != "latent_avg") +
          (", latent_avg" if "latent_avg" in meta else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
