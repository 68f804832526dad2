#!/usr/bin/env bash
# Download and prepare ADE20k (SceneParsing, ADEChallengeData2016) in the layout of
# docs/protocol-2d.md#datasets-on-disk:
#
#   TARGET/ADEChallengeData2016/images/{training,validation}/<id>.jpg        (20,210 / 2,000)
#   TARGET/ADEChallengeData2016/annotations/{training,validation}/<id>.png   (labels 0..150)
#
# Usage: scripts/data/prepare_ade20k.sh TARGET    (then use data.root=TARGET)
#
# Source: ADEChallengeData2016.zip from the MIT Scene Parsing host (checked against its known
# SHA-1). Set ADE_URL to use a mirror, or put the zip in TARGET/downloads/ yourself.
# The script is idempotent: a finished download or extraction is detected and skipped.
set -euo pipefail

ADE_URL="${ADE_URL:-http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip}"
ADE_SHA1="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
NUM_TRAIN=20210
NUM_VAL=2000

die() { echo "prepare_ade20k: error: $*" >&2; exit 1; }
say() { echo "prepare_ade20k: $*"; }

[[ $# -eq 1 ]] || die "usage: $0 TARGET_DIR (the folder that will hold ADEChallengeData2016/)"
command -v unzip >/dev/null || die "'unzip' is required; install it and re-run"

TARGET="$1"
mkdir -p "$TARGET/downloads"
TARGET="$(cd "$TARGET" && pwd)"
ADE="$TARGET/ADEChallengeData2016"
ZIP="$TARGET/downloads/ADEChallengeData2016.zip"

count_files() {  # count_files DIR SUFFIX
    if [[ -d "$1" ]]; then find "$1" -maxdepth 1 -type f -name "*$2" | wc -l | tr -d ' '; else echo 0; fi
}

sha1_of() {
    if command -v sha1sum >/dev/null; then sha1sum "$1" | cut -d' ' -f1; else shasum -a 1 "$1" | cut -d' ' -f1; fi
}

complete() {
    [[ "$(count_files "$ADE/images/training" .jpg)" -eq $NUM_TRAIN \
        && "$(count_files "$ADE/annotations/training" .png)" -eq $NUM_TRAIN \
        && "$(count_files "$ADE/images/validation" .jpg)" -eq $NUM_VAL \
        && "$(count_files "$ADE/annotations/validation" .png)" -eq $NUM_VAL ]]
}

if ! complete; then
    if [[ ! -s "$ZIP" ]]; then
        say "downloading $ADE_URL"
        if command -v curl >/dev/null; then
            curl -L --fail --retry 3 -C - -o "$ZIP.part" "$ADE_URL"
        elif command -v wget >/dev/null; then
            wget --tries=3 -c -O "$ZIP.part" "$ADE_URL"
        else
            die "curl or wget is required to download $ADE_URL"
        fi
        mv "$ZIP.part" "$ZIP"
    fi
    say "checking the SHA-1 of $ZIP"
    [[ "$(sha1_of "$ZIP")" == "$ADE_SHA1" ]] || die "$ZIP has the wrong SHA-1 (corrupt download?); delete it and re-run"
    say "extracting $ZIP"
    unzip -q -o "$ZIP" -d "$TARGET"
fi
complete || die "$ADE is incomplete: expected $NUM_TRAIN training and $NUM_VAL validation images and annotations"

# every image needs its annotation (css.image.data refuses images without one)
for split in training validation; do
    missing="$(comm -23 \
        <(ls "$ADE/images/$split" | sed -n 's/\.jpg$//p' | LC_ALL=C sort) \
        <(ls "$ADE/annotations/$split" | sed -n 's/\.png$//p' | LC_ALL=C sort) | head -5)"
    [[ -z "$missing" ]] || die "images without annotation in $split: $missing"
done

say "done: $ADE is ready (use data.root=$TARGET)."
say "you can delete $TARGET/downloads; check with: python -m css.data inspect --dataset ade --root $TARGET --task 100-50"
