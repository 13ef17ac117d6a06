#!/usr/bin/env bash
# Fetch objvid model weights onto the weights volume and convert GEN3C for Triton.
#
# Environment (all optional):
#   OBJVID_WEIGHTS_ROOT      volume mount point (default /models)
#   OBJVID_WEIGHTS_SET       depth | gen3c | all (default all)
#   OBJVID_WEIGHTS_KEEP_RAW  1 keeps the original GEN3C/tokenizer/T5 downloads under ROOT/raw (default 0)
#   OBJVID_MOGE_REPO, OBJVID_GEN3C_REPO, OBJVID_TOKENIZER_REPO, OBJVID_T5_REPO   Hugging Face repos
#   OBJVID_HF_REVISION       git revision for every download (default main; pin a commit for reproducibility)
#   OBJVID_T5_FILES          files of the T5 repo to fetch (default: config.json spiece.model pytorch_model.bin)
#   OBJVID_GEN3C_DTYPE       dtype of the converted transformer: bf16 (default), fp32 or keep
#   OBJVID_CONVERT_ALLOW_PICKLE  1 passes --allow-pickle (full pickle load of model.pt; trusted files only)
#   OBJVID_HF_BIN            Hugging Face CLI (default: `hf`, else `huggingface-cli`)
#   OBJVID_CONVERT_BIN       converter (default objvid-diffusion)
#   HF_TOKEN                 token for gated repos (from the objvid-hf-token Secret)
# Every finished directory gets a .objvid-ready marker, written last; a directory that has one is skipped.
set -euo pipefail

root="${OBJVID_WEIGHTS_ROOT:-/models}"
weights_set="${OBJVID_WEIGHTS_SET:-all}"
keep_raw="${OBJVID_WEIGHTS_KEEP_RAW:-0}"
revision="${OBJVID_HF_REVISION:-main}"
moge_repo="${OBJVID_MOGE_REPO:-Ruicheng/moge-vitl}"
gen3c_repo="${OBJVID_GEN3C_REPO:-nvidia/GEN3C-Cosmos-7B}"
tokenizer_repo="${OBJVID_TOKENIZER_REPO:-nvidia/Cosmos-Tokenize1-CV8x8x8-720p}"
t5_repo="${OBJVID_T5_REPO:-google-t5/t5-11b}"
t5_files="${OBJVID_T5_FILES:-config.json spiece.model pytorch_model.bin}"
gen3c_dtype="${OBJVID_GEN3C_DTYPE:-bf16}"
allow_pickle="${OBJVID_CONVERT_ALLOW_PICKLE:-0}"
convert_bin="${OBJVID_CONVERT_BIN:-objvid-diffusion}"
hf_bin="${OBJVID_HF_BIN:-}"
if [ -z "$hf_bin" ]; then
  hf_bin="$(command -v hf || command -v huggingface-cli || true)"
fi
marker=".objvid-ready"

log() {
  # one line per event, key=value
  echo "event=$*"
}

fail() {
  echo "event=error $*" >&2
  exit 1
}

hf_get() {
  # hf_get REPO DEST [FILES...]: download REPO (or only FILES) into DEST
  local repo="$1" dest="$2"
  shift 2
  log "download repo=$repo dest=$dest revision=$revision files=${*:-all}"
  "$hf_bin" download "$repo" "$@" --revision "$revision" --local-dir "$dest"
}

fetch_moge() {
  local dest="$root/moge-vitl"
  if [ -f "$dest/$marker" ]; then
    log "skip weights=moge dest=$dest reason=ready"
    return
  fi
  hf_get "$moge_repo" "$dest" model.pt
  [ -s "$dest/model.pt" ] || fail "weights=moge reason=missing_file path=$dest/model.pt"
  touch "$dest/$marker"
  log "ready weights=moge dest=$dest"
}

fetch_gen3c() {
  local dest="$root/gen3c" raw="$root/raw"
  if [ -f "$dest/$marker" ]; then
    log "skip weights=gen3c dest=$dest reason=ready"
    return
  fi
  hf_get "$gen3c_repo" "$raw/GEN3C-Cosmos-7B" model.pt
  hf_get "$tokenizer_repo" "$raw/Cosmos-Tokenize1-CV8x8x8-720p"
  # shellcheck disable=SC2086  # a list of file names
  hf_get "$t5_repo" "$raw/t5-11b" $t5_files
  rm -rf "$dest.partial"
  local extra=()
  if [ "$allow_pickle" = "1" ]; then
    extra+=(--allow-pickle)
  fi
  log "convert weights=gen3c out=$dest.partial dtype=$gen3c_dtype"
  "$convert_bin" convert \
    --gen3c "$raw/GEN3C-Cosmos-7B/model.pt" \
    --tokenizer "$raw/Cosmos-Tokenize1-CV8x8x8-720p" \
    --text-encoder "$raw/t5-11b" \
    --out "$dest.partial" \
    --dtype "$gen3c_dtype" \
    "${extra[@]}"
  [ -d "$dest.partial" ] || fail "weights=gen3c reason=converter_wrote_nothing path=$dest.partial"
  # swap in the finished directory; the marker goes last so readers never see a half-written one
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  touch "$dest/$marker"
  if [ "$keep_raw" != "1" ]; then
    rm -rf "$raw"
    log "cleanup removed=$raw"
  fi
  log "ready weights=gen3c dest=$dest"
}

[ -n "$hf_bin" ] || fail "reason=no_hf_cli hint=install_huggingface_hub"
[ -d "$root" ] || fail "reason=missing_root path=$root"
[ -w "$root" ] || fail "reason=root_not_writable path=$root"

case "$weights_set" in
  depth) fetch_moge ;;
  gen3c) fetch_gen3c ;;
  all)
    fetch_moge
    fetch_gen3c
    ;;
  *) fail "field=OBJVID_WEIGHTS_SET value=$weights_set reason=expected_depth_gen3c_or_all" ;;
esac
log "done set=$weights_set root=$root"
