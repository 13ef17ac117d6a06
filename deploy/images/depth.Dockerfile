# syntax=docker/dockerfile:1.7
# objvid depth service (MoGe monocular depth, gRPC DepthService on 50051, metrics on 9101).
# Build from the repository root (deploy/Makefile.mk: `make images`):
#   docker build -f deploy/images/depth.Dockerfile -t ghcr.io/objvid/depth:0.1.0 .
# CPU-only variant (laptop clusters): --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
COPY . /src
RUN sh /src/deploy/images/build-wheel.sh /src /wheels

FROM ${PYTHON_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
ARG MOGE_VERSION=2.0.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/etc/objvid/constraints.txt \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/objvid \
 && printf 'torch==%s\nnumpy<2\n' "${TORCH_VERSION}" > /etc/objvid/constraints.txt
# torch first, from the chosen index (PyPI's default wheel is the CUDA build)
RUN pip install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} "torch==${TORCH_VERSION}"
COPY --from=wheel /wheels /wheels
# MoGe's own dependency list pulls another torch, gradio and numpy 2: install it without deps;
# objvid[depth] carries what its inference code imports.
RUN pip install "$(ls /wheels/objvid-*.whl)[depth]" \
 && pip install --no-deps "dlr-moge==${MOGE_VERSION}" \
 && rm -rf /wheels \
 && python -c "import moge, objvid.depth, torch; print('torch', torch.__version__)"
# exec probe for TLS-enabled servers (components/tls); the kubelet's gRPC probe cannot speak TLS
COPY deploy/images/grpc-health-probe.py /opt/objvid/bin/grpc-health-probe.py
RUN groupadd --gid 10001 objvid \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin objvid
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9101
ENTRYPOINT ["objvid-depth"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9101"]
