# syntax=docker/dockerfile:1.7
# objvid diffusion: NVIDIA Triton Inference Server (Python backend) with objvid[diffusion] and the
# model repository services/diffusion/model_repository (gen3c, preview) at /opt/objvid/model_repository.
# HTTP 8000, gRPC 8001, metrics 8002. Also runs the weights Job (`hf download`, `objvid-diffusion convert`).
# Build from the repository root (deploy/Makefile.mk: `make images`):
#   docker build -f deploy/images/diffusion.Dockerfile -t ghcr.io/objvid/diffusion:0.1.0 .
# The Triton release is pinned; its Python (3.12) is the one the Python backend runs.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:26.08-py3
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
COPY . /src
RUN sh /src/deploy/images/build-wheel.sh /src /wheels

FROM ${TRITON_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
# objvid extras beyond `diffusion`: `fa4` brings FlashAttention-4 (the default attention on H100/H200/B200);
# set OBJVID_EXTRAS=diffusion for a torch built for CUDA 12 (then add flash-attn-4 without [cu13]).
ARG OBJVID_EXTRAS=diffusion,fa4
# The container's Python is the system one (PEP 668); objvid goes into /usr/local for the backend.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_CONSTRAINT=/etc/objvid/constraints.txt \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER root
RUN if ! python3 -m pip --version >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /etc/objvid \
 && printf 'torch==%s\nnumpy<2\n' "${TORCH_VERSION}" > /etc/objvid/constraints.txt
RUN python3 -m pip install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} "torch==${TORCH_VERSION}"
COPY --from=wheel /wheels /wheels
RUN python3 -m pip install "$(ls /wheels/objvid-*.whl)[${OBJVID_EXTRAS}]" \
 && rm -rf /wheels \
 && python3 -c "import objvid.diffusion, torch; print('torch', torch.__version__)" \
 && (command -v hf || command -v huggingface-cli)
COPY services/diffusion/model_repository /opt/objvid/model_repository
RUN find /opt/objvid/model_repository -name __pycache__ -prune -exec rm -rf {} + \
 && chmod -R a+rX /opt/objvid \
 && groupadd --gid 10001 objvid \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin objvid
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 8002
# NVIDIA's entrypoint stays; it runs this command.
CMD ["tritonserver", "--model-repository=/opt/objvid/model_repository", "--model-control-mode=explicit", "--load-model=preview"]
