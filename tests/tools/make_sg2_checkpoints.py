#!/usr/bin/env python3
"""Test helper: writes rosinality-style checkpoints from a safetensors generator.

Usage: make_sg2_checkpoints.py GENERATOR.safetensors OUTDIR

Writes OUTDIR/legacy.pt (torch.save(..., _use_new_zipfile_serialization=False))
and OUTDIR/zip.pt (default zip format), each {"g_ema": state_dict, "g": ...,
"latent_avg": tensor}, with latent_avg = 0.01 * arange(style_dim) - 0.3, and
checks the two formats really differ (zip vs legacy pickle).
"""
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from safetensors_writer import read_safetensors  # noqa: E402


def main():
    src, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    state = read_safetensors(src)
    style_dim = state["style.1.weight"].shape[1]
    ckpt = {
        "g_ema": state,
        "g": {k: v + 1 for k, v in state.items()},  # must not be picked
        "latent_avg": torch.arange(style_dim, dtype=torch.float32) * 0.01 - 0.3,
    }
    legacy = os.path.join(outdir, "legacy.pt")
    zipped = os.path.join(outdir, "zip.pt")
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    torch.save(ckpt, zipped)
    assert not zipfile.is_zipfile(legacy), "legacy checkpoint is a zip"
    assert zipfile.is_zipfile(zipped), "default checkpoint is not a zip"
    print("wrote", legacy, zipped)


if __name__ == "__main__":
    main()
