# syntax=docker/dockerfile:1.7
# objvid cache service (3D cache renderer, gRPC CacheService on 50052, metrics on 9102).
# Build from the repository root (deploy/Makefile.mk: `make images`):
#   docker build -f deploy/images/cache.Dockerfile -t ghcr.io/objvid/cache:0.1.0 .
# GPU images use the full `open3d` wheel; for a CPU-only image pass
#   --build-arg OPEN3D_PACKAGE=open3d-cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
COPY . /src
RUN sh /src/deploy/images/build-wheel.sh /src /wheels

FROM ${PYTHON_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
ARG OPEN3D_PACKAGE=open3d
ARG OPEN3D_VERSION=0.20.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/etc/objvid/constraints.txt \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Open3D needs libusb at import; the full wheel also links libGL/libEGL and OpenMP.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0 libgomp1 libgl1 libegl1 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/objvid \
 && printf 'torch==%s\nnumpy<2\n' "${TORCH_VERSION}" > /etc/objvid/constraints.txt
RUN pip install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} "torch==${TORCH_VERSION}"
COPY --from=wheel /wheels /wheels
# objvid[cache] names open3d-cpu; both wheels install the same `open3d` module, so swap it out
# for the full wheel on GPU images.
RUN pip install "$(ls /wheels/objvid-*.whl)[cache]" \
 && if [ "${OPEN3D_PACKAGE}" != "open3d-cpu" ]; then \
      pip uninstall -y open3d-cpu && pip install "${OPEN3D_PACKAGE}==${OPEN3D_VERSION}"; \
    fi \
 && rm -rf /wheels \
 && python -c "import open3d, objvid.cache, torch; print('torch', torch.__version__, 'open3d', open3d.__version__)"
# exec probe for TLS-enabled servers (components/tls); the kubelet's gRPC probe cannot speak TLS
COPY deploy/images/grpc-health-probe.py /opt/objvid/bin/grpc-health-probe.py
RUN groupadd --gid 10001 objvid \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin objvid
USER 10001:10001
WORKDIR /tmp
EXPOSE 50052 9102
ENTRYPOINT ["objvid-cache"]
CMD ["serve", "--host", "0.0.0.0", "--port", "50052", "--metrics-port", "9102"]
