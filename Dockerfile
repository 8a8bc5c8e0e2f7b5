# syntax=docker/dockerfile:1
# gocram's production image: one NVIDIA GPU node (A40 class, or several GPUs via torchrun/DeepSpeed).
#
#   docker build -t gocram .
#   docker run --gpus all --shm-size 16g -v $PWD/data:/data -v $PWD/results:/results gocram
#   docker run --gpus all ... -e GOCRAM_ENGINE=ddp gocram            # all GPUs of the node
#   docker run --gpus all ... -e GOCRAM_MODE=lab -e GOCRAM_MATRIX=smoke gocram
#
# The CUDA base: torch 2.13.0's default PyPI wheel (manylinux_2_28_x86_64) depends on
# cuda-toolkit==13.0.3 and nvidia-cudnn-cu13 (read from the wheel's metadata with
# `pip install --dry-run --report`), so the base is CUDA 13.0. The wheel brings its own CUDA
# runtime; the devel base adds nvcc for DeepSpeed's JIT ops and the optional flash-attn build.
# CUDA 13 needs a host driver >= 580. A40 (sm_86) is supported by CUDA 13.
ARG CUDA_VERSION=13.0.2
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu24.04

# Kept in step with pyproject.toml and requirements/*.txt (tests/test_dockerfile.py checks it).
ARG TORCH_VERSION=2.13.0
ARG TRITON_VERSION=3.7.1
ARG DEEPSPEED_VERSION=0.19.8
ARG XFORMERS_VERSION=0.0.35
# flash-attn has no wheel for torch 2.13 + CUDA 13 (PyPI ships only source): 0 = leave it out
# (gocram's flash_attn backend then reports itself unsupported), 1 = compile it here (~1 hour).
ARG BUILD_FLASH_ATTN=0
ARG FLASH_ATTN_VERSION=2.8.3.post2

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    GOCRAM_CACHE=/data/cache \
    TORCH_EXTENSIONS_DIR=/data/cache/torch_extensions \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"

# xz-utils: the xz -9e baseline in every result row; git: the commit in result rows.
# Ubuntu's versions are fixed by the release (24.04) the base pins; exact apt pins would break
# with each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential ninja-build git xz-utils zstd ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first and alone: the largest layer changes least often. torch and triton are pinned in
# the same command as everything that depends on them, so pip never swaps the CUDA build.
RUN pip install "torch==${TORCH_VERSION}" "triton==${TRITON_VERSION}"

WORKDIR /opt/gocram
COPY requirements/ requirements/
RUN pip install "torch==${TORCH_VERSION}" "triton==${TRITON_VERSION}" \
        -r requirements/cpu.txt -r requirements/gpu.txt \
        "deepspeed==${DEEPSPEED_VERSION}" "xformers==${XFORMERS_VERSION}"

# A layer of its own, so toggling the build does not reinstall the stack above.
# hadolint ignore=DL3059
RUN if [ "${BUILD_FLASH_ATTN}" = "1" ]; then \
        MAX_JOBS=8 pip install --no-build-isolation "torch==${TORCH_VERSION}" \
            "flash-attn==${FLASH_ATTN_VERSION}"; \
    fi

COPY pyproject.toml README.md Makefile ./
COPY gocram/ gocram/
COPY configs/ configs/
COPY corpus/ corpus/
COPY evaldata/ evaldata/
COPY docker/entrypoint.sh /usr/local/bin/gocram-entrypoint
RUN pip install --no-deps . && chmod +x /usr/local/bin/gocram-entrypoint

# /data: a corpus to train on (/data/corpus) and caches; /results: run directories and results.
VOLUME ["/data", "/results"]
ENTRYPOINT ["/usr/local/bin/gocram-entrypoint"]
