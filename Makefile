# objvid developer entry points. `make test` and `make demo` work on a fresh clone (Debian, Python >= 3.11).
# Every step is idempotent: stamps under .stamps/ skip what is already installed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
TORCH_VERSION := 2.13.0
# Optional extra index for torch only, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu (CPU-only
# wheels, ~200 MB instead of the multi-GB CUDA build PyPI serves on Linux). Empty: the package index only.
TORCH_INDEX ?=
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: 2 (CI's 2 cores; half the suite is waits and single-threaded work),
# each test file whole on one worker (--dist loadfile: module fixtures built once). 0 = one process.
PYTEST_WORKERS ?= 2

.PHONY: setup test lint demo studio proto clean-env images k8s-validate

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "objvid needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first; later ranges that 2.13.0 satisfies install nothing. TORCH_INDEX adds an index for torch only.
$(STAMPS)/torch: | $(PY)
	@mkdir -p $(STAMPS)
	@$(PY) -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "$(TORCH_VERSION)")' 2>/dev/null \
		|| $(PIP) install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==$(TORCH_VERSION)
	@touch $@

# The project with every extra; MoGe without its dependency list (it would pull a CUDA torch and numpy 2).
$(STAMPS)/objvid: pyproject.toml build_backend/objvid_build.py $(STAMPS)/torch
	$(PIP) install -q -e '.[all,dev]'
	$(PIP) install -q --no-deps dlr-moge==2.0.0
	@touch $@

# Open3D needs Debian's libusb-1.0-0 at import time.
$(STAMPS)/libusb:
	@mkdir -p $(STAMPS)
	@if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null; \
		else \
			echo "Open3D needs libusb: run  sudo apt-get install -y libusb-1.0-0"; exit 1; \
		fi; \
	fi
	@touch $@

# The studio's browser tests drive Debian's chromium through chromium-driver (selenium).
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "The studio's browser tests need: sudo apt-get install -y chromium chromium-driver"; exit 1; \
		fi; \
	fi
	@touch $@

$(BUF):
	npm install --prefix .tools --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

setup: $(STAMPS)/objvid $(STAMPS)/libusb $(BUF)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd protos && ../$(BUF) lint

test: lint $(STAMPS)/chromium
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The main job on bundled example inputs: a synthetic RGB-D room (exact depth, so no MoGe weights are
# needed) and a sneaker point cloud, through the local stack (cache service + PyTriton `preview` model:
# OpenCV hole filling, NOT GEN3C) -> out/demo.mp4 (121 frames, 704x1280).
demo: $(STAMPS)/objvid $(STAMPS)/libusb  # no buf (Node.js) needed
	$(PY) examples/make_assets.py --out examples/assets
	$(VENV)/bin/objvid-client generate --image examples/assets/room.png --depth examples/assets/room_depth.npy \
		--intrinsics examples/assets/room_K.json --object examples/assets/sneaker.ply --object-units m --backend preview \
		--frames 121 --width 1280 --height 704 --out out/demo.mp4
	@echo "demo video: $(CURDIR)/out/demo.mp4"

# The web studio on the demo room and sneaker (preview backend): open the printed URL; Ctrl-C stops it.
studio: $(STAMPS)/objvid $(STAMPS)/libusb
	$(VENV)/bin/objvid-client studio --demo

# Regenerate the committed schema code (tests/test_schema.py checks it is current).
proto: setup
	$(PY) protos/generate.py

clean-env:
	rm -rf $(VENV) $(STAMPS) .tools

-include deploy/Makefile.mk
