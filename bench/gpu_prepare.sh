#!/usr/bin/env bash
# Fills .gpu-deps/ (ignored by git) with what bench/gpu_check.sh needs on a GPU
# machine that has PyTorch, CMake and a compiler but nothing of ours and no
# network: the header-only / static build dependencies copied from this Debian
# machine (nlohmann-json, GoogleTest) in a relocatable prefix, and the golden
# StyleGAN2 and trainer cases with a manifest listing only them (~40 MB).
#
#   bench/gpu_prepare.sh          # here, once per session
#   (device) bench/gpu_check.sh   # there, with .gpu-deps carried
set -euo pipefail
cd "$(dirname "$0")/.."
golden="${RESTYLE_GOLDEN_DIR:-../shared/golden}"
out=.gpu-deps
rm -rf "$out"
mkdir -p "$out/prefix/include" "$out/prefix/lib/x86_64-linux-gnu/cmake" "$out/prefix/share/cmake" \
         "$out/golden/cases" "$out/golden/models"
cp -r /usr/include/nlohmann /usr/include/gtest /usr/include/gmock "$out/prefix/include/"
cp -r /usr/share/cmake/nlohmann_json "$out/prefix/share/cmake/"
cp /usr/lib/x86_64-linux-gnu/libgtest*.a /usr/lib/x86_64-linux-gnu/libgmock*.a \
   "$out/prefix/lib/x86_64-linux-gnu/"
cp -r /usr/lib/x86_64-linux-gnu/cmake/GTest "$out/prefix/lib/x86_64-linux-gnu/cmake/"
/usr/bin/python3 - "$golden" "$out/golden" <<'PY'
# The StyleGAN2 and trainer (IPL, NADA, layer selection) cases, the models and
# the tokenizer vocabulary they use, and a manifest listing only them.
import json, shutil, sys, os
src, dst = sys.argv[1], sys.argv[2]
kinds = ("sg2_", "ipl_stage1", "ipl_stage2", "layer_select", "nada_direction")
m = json.load(open(os.path.join(src, "manifest.json")))
m["cases"] = [c for c in m["cases"] if c["kind"].startswith(kinds)]
used = {m["tokenizer"]["vocab"], m["text_templates"]}
for c in m["cases"]:
    for key in ("json", "tensors"):
        if c.get(key):
            used.add(c[key])
    meta = json.load(open(os.path.join(src, c["json"])))
    for path in (meta.get("models") or {}).values():
        used.add(path if isinstance(path, str) else path.get("file", ""))
m["models"] = [x for x in m["models"] if x["file"] in used]
for x in m["models"]:
    used.add(x["json"])
for rel in sorted(p for p in used if p):
    if os.path.exists(os.path.join(src, rel)):
        os.makedirs(os.path.dirname(os.path.join(dst, rel)) or dst, exist_ok=True)
        shutil.copy(os.path.join(src, rel), os.path.join(dst, rel))
json.dump(m, open(os.path.join(dst, "manifest.json"), "w"), indent=1)
print("golden: %d cases (%s), %d models" % (len(m["cases"]), ", ".join(sorted({c["kind"] for c in m["cases"]})), len(m["models"])))
PY
# .gpu-deps/ is in .gitignore: name it in the device run's carry list.
du -sh "$out"
