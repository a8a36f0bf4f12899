#!/usr/bin/env python3
"""Converts an OpenAI CLIP checkpoint (.pt) to safetensors for Restyle.

Run once per model, offline, with any PyTorch install:

    python3 tools/convert_clip.py ViT-B-32.pt clip_vit_b32.safetensors [--dtype float32]

Input: OpenAI's released files (TorchScript archives, as clip.load downloads
them) or a plain pickled state dict (optionally under a "state_dict" key).
Output: a safetensors file with the ORIGINAL state_dict names
("visual.conv1.weight", "transformer.resblocks.0.attn.in_proj_weight", ...),
tensors in the dtype they are stored in (fp16 for the official files) unless
--dtype is given, and "__metadata__" with the inferred configuration (the way
clip.model.build_model infers it) as JSON strings. The bookkeeping entries
input_resolution, context_length and vocab_size are dropped (build_model
drops them too); their values go to the metadata. Only ViT models are
supported by the Restyle engine; ResNet checkpoints are refused.
"""

import argparse
import json
import os
import sys

import torch

from safetensors_writer import write_safetensors

BOOKKEEPING = ("input_resolution", "context_length", "vocab_size")


def read_state_dict(path):
    """Returns (name -> tensor, kind) from a TorchScript archive or a pickle."""
    try:
        module = torch.jit.load(path, map_location="cpu")
        return dict(module.state_dict()), "torchscript"
    except RuntimeError:
        pass
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise SystemExit(f"{path}: neither a TorchScript archive nor a state dict of tensors")
    return dict(obj), "state_dict"


def infer_config(sd):
    """The configuration clip.model.build_model would infer (ViT only)."""
    if "visual.proj" not in sd:
        raise SystemExit("not a CLIP ViT state dict (no visual.proj); ResNet CLIP is not supported")
    vision_width = sd["visual.conv1.weight"].shape[0]
    vision_layers = len({k.split(".")[3] for k in sd
                         if k.startswith("visual.transformer.resblocks.")})
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    width = sd["ln_final.weight"].shape[0]
    return {
        "embed_dim": sd["text_projection"].shape[1],
        "image_resolution": patch * grid,
        "vision_layers": vision_layers,
        "vision_width": vision_width,
        "vision_patch_size": patch,
        "context_length": sd["positional_embedding"].shape[0],
        "vocab_size": sd["token_embedding.weight"].shape[0],
        "transformer_width": width,
        "transformer_heads": width // 64,
        "transformer_layers": len({k.split(".")[2] for k in sd
                                   if k.startswith("transformer.resblocks.")}),
    }


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="OpenAI CLIP .pt (TorchScript archive or state dict)")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--dtype", choices=["as-stored", "float32", "float16"],
                        default="as-stored", help="tensor dtype in the output")
    args = parser.parse_args(argv)

    sd, kind = read_state_dict(args.input)
    extra = {k: int(sd.pop(k).item()) for k in BOOKKEEPING if k in sd}
    config = infer_config(sd)
    if args.dtype != "as-stored":
        target = torch.float32 if args.dtype == "float32" else torch.float16
        sd = {k: (v.to(target) if v.is_floating_point() else v) for k, v in sd.items()}
    metadata = {
        "format": "restyle.clip.v1",
        "architecture": "openai/CLIP ViT",
        "config": json.dumps(config, sort_keys=True),
        "source": os.path.basename(args.input),
        "source_kind": kind,
        "dropped_entries": json.dumps(extra, sort_keys=True),
    }
    write_safetensors(args.output, sd, metadata)
    print(f"wrote {args.output}: {len(sd)} tensors, config {json.dumps(config, sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
