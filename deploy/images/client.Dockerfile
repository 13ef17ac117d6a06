# syntax=docker/dockerfile:1.7
# objvid client (objvid-client CLI and SDK; talks to depth, cache and Triton). No torch.
# Build from the repository root (deploy/Makefile.mk: `make images`):
#   docker build -f deploy/images/client.Dockerfile -t ghcr.io/objvid/client:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
COPY . /src
RUN sh /src/deploy/images/build-wheel.sh /src /wheels

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/etc/objvid/constraints.txt \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN mkdir -p /etc/objvid && printf 'numpy<2\n' > /etc/objvid/constraints.txt
COPY --from=wheel /wheels /wheels
RUN pip install "$(ls /wheels/objvid-*.whl)[client]" \
 && rm -rf /wheels \
 && python -c "import objvid.client"
RUN groupadd --gid 10001 objvid \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin objvid
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["objvid-client"]
CMD ["--help"]
