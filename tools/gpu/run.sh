#!/usr/bin/env bash
# The one prepared device run (GPU machine with PyTorch + transformers, maybe without Node.js).
# Carried beside the working tree: .gpu/node.xz (this machine's Node.js), .gpu/payload.tar.xz (the
# esbuild bundle of tools/gpu/encode-bench.ts with onnxruntime-node's and tokenizers' Linux x64
# binaries), .gl/*.deb (the Vulkan loader for onnxruntime's WebGPU provider).
# Usage: bash tools/gpu/run.sh OUT_DIR
set -x
out=$1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
python3 tools/gpu/hf_reference.py tools/gpu/tiny-config.json layers/encoder/assets/vocab-bert-base-cased.txt \
  tools/gpu/sentences.json /tmp/hfout 2>&1 | tee "$out/python.log"
(cd /tmp/hfout && tar -czf "$out/hf-reference.tar.gz" hf && cp torch-fp16.json "$out/")
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
if [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ] && [ ! -e /etc/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
mkdir -p /tmp/gpu
xz -dc .gpu/node.xz > /tmp/gpu/node && chmod +x /tmp/gpu/node
tar -xJf .gpu/payload.tar.xz -C /tmp/gpu
/tmp/gpu/node --version
mkdir -p /tmp/profile
PROFILE_DIR=/tmp/profile timeout 300 /tmp/gpu/node /tmp/gpu/dist/encode-bench.mjs "$out/ort-webgpu.json" webgpu 2>&1 \
  | tee /tmp/node.log | grep -v '^\S* *\[I:' | tee "$out/node.log"
gzip -c /tmp/node.log > "$out/node-verbose.log.gz"
(cd /tmp/profile && tar -czf "$out/ort-profile.tar.gz" .)
