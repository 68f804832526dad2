#!/usr/bin/env bash
# Download and prepare Pascal VOC 2012 with the augmented ("train_aug") labels in the layout the
# reference expects (docs/protocol-2d.md#datasets-on-disk) and css.image.data reads:
#
#   TARGET/PascalVOC2012/VOCdevkit/VOC2012/JPEGImages/<id>.jpg     (17,125 images)
#   TARGET/PascalVOC2012/SegmentationClassAug/<id>.png             (12,031 label maps, 0..20, 255)
#   TARGET/PascalVOC2012/list/train_aug.txt                        (10,582 lines)
#   TARGET/PascalVOC2012/list/val.txt                              (1,449 lines)
#   list lines: "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"
#
# Usage: scripts/data/prepare_voc.sh TARGET      (then use data.root=TARGET)
#
# Sources:
# - VOCtrainval_11-May-2012.tar from the official VOC host (checked against its known MD5).
# - SegmentationClassAug.zip: the DeepLab train_aug label maps (VOC 2012 plus the SBD annotations
#   of Hariharan et al., ICCV 2011, converted to PNG), usually fetched from the Dropbox link below.
#   Set VOC_AUG_URL to use a mirror, or put the zip in TARGET/downloads/ yourself.
# - List files: the reference used the train_aug.txt / val.txt of a "list.zip" shared by the
#   authors of the continual-segmentation code bases. If you have those files, copy them into
#   TARGET/PascalVOC2012/list/ and they are kept. Otherwise this script writes them: val.txt from
#   the official ImageSets/Segmentation/val.txt (same order) and train_aug.txt = every
#   SegmentationClassAug id not in val, sorted. These are the same images as the reference lists;
#   only train_aug.txt's line order may differ, which changes nothing but the sampling order.
#
# The script is idempotent: finished downloads and extractions are detected and skipped, and
# partial downloads are resumed. It needs curl or wget, tar, unzip, md5sum (or md5), sort, comm.
set -euo pipefail

VOC_URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_MD5="6cd6e144f989b92b3379bac3b3de84fd"
AUG_URL="${VOC_AUG_URL:-https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1}"
NUM_IMAGES=17125
NUM_LABELS=12031
NUM_TRAIN=10582
NUM_VAL=1449

die() { echo "prepare_voc: error: $*" >&2; exit 1; }
say() { echo "prepare_voc: $*"; }

[[ $# -eq 1 ]] || die "usage: $0 TARGET_DIR (the folder that will hold PascalVOC2012/)"
for tool in tar unzip sort comm; do
    command -v "$tool" >/dev/null || die "'$tool' is required; install it and re-run"
done

TARGET="$1"
mkdir -p "$TARGET/downloads" "$TARGET/PascalVOC2012/list"
TARGET="$(cd "$TARGET" && pwd)"
VOC="$TARGET/PascalVOC2012"
DOWNLOADS="$TARGET/downloads"

fetch() {  # fetch URL FILE: download to FILE.part (resuming), then rename
    local url="$1" file="$2"
    if [[ -s "$file" ]]; then say "already downloaded: $file"; return; fi
    say "downloading $url"
    if command -v curl >/dev/null; then
        curl -L --fail --retry 3 -C - -o "$file.part" "$url"
    elif command -v wget >/dev/null; then
        wget --tries=3 -c -O "$file.part" "$url"
    else
        die "curl or wget is required to download $url"
    fi
    mv "$file.part" "$file"
}

md5_of() {
    if command -v md5sum >/dev/null; then md5sum "$1" | cut -d' ' -f1; else md5 -q "$1"; fi
}

count_files() {  # count_files DIR SUFFIX
    if [[ -d "$1" ]]; then find "$1" -maxdepth 1 -type f -name "*$2" | wc -l | tr -d ' '; else echo 0; fi
}

# 1. VOC 2012 trainval images
JPEG_DIR="$VOC/VOCdevkit/VOC2012/JPEGImages"
if [[ "$(count_files "$JPEG_DIR" .jpg)" -ne $NUM_IMAGES ]]; then
    TAR="$DOWNLOADS/VOCtrainval_11-May-2012.tar"
    fetch "$VOC_URL" "$TAR"
    say "checking the MD5 of $TAR"
    [[ "$(md5_of "$TAR")" == "$VOC_MD5" ]] || die "$TAR has the wrong MD5 (corrupt download?); delete it and re-run"
    say "extracting $TAR"
    tar -xf "$TAR" -C "$VOC"
fi
[[ "$(count_files "$JPEG_DIR" .jpg)" -eq $NUM_IMAGES ]] \
    || die "expected $NUM_IMAGES images in $JPEG_DIR, found $(count_files "$JPEG_DIR" .jpg)"

# 2. augmented label maps
AUG_DIR="$VOC/SegmentationClassAug"
if [[ "$(count_files "$AUG_DIR" .png)" -ne $NUM_LABELS ]]; then
    ZIP="$DOWNLOADS/SegmentationClassAug.zip"
    fetch "$AUG_URL" "$ZIP"
    say "extracting $ZIP"
    unzip -q -o "$ZIP" -d "$VOC"
    rm -rf "$VOC/__MACOSX"
fi
[[ "$(count_files "$AUG_DIR" .png)" -eq $NUM_LABELS ]] \
    || die "expected $NUM_LABELS label maps in $AUG_DIR, found $(count_files "$AUG_DIR" .png)"

# 3. list files (kept when present)
line() { sed -e 's|.*|/JPEGImages/&.jpg /SegmentationClassAug/&.png|'; }
OFFICIAL_VAL="$VOC/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
if [[ ! -s "$VOC/list/val.txt" ]]; then
    [[ -s "$OFFICIAL_VAL" ]] || die "missing $OFFICIAL_VAL (part of the VOC tar); delete $JPEG_DIR and re-run"
    say "writing $VOC/list/val.txt"
    tr -d '\r' < "$OFFICIAL_VAL" | sed '/^$/d' | line > "$VOC/list/val.txt.tmp"
    mv "$VOC/list/val.txt.tmp" "$VOC/list/val.txt"
fi
if [[ ! -s "$VOC/list/train_aug.txt" ]]; then
    say "writing $VOC/list/train_aug.txt (SegmentationClassAug ids not in val, sorted)"
    VAL_IDS="$(mktemp)"
    trap 'rm -f "$VAL_IDS"' EXIT
    sed -e 's|^/JPEGImages/\([^ ]*\)\.jpg .*|\1|' "$VOC/list/val.txt" | LC_ALL=C sort > "$VAL_IDS"
    ls "$AUG_DIR" | sed -n 's/\.png$//p' | LC_ALL=C sort \
        | LC_ALL=C comm -23 - "$VAL_IDS" | line > "$VOC/list/train_aug.txt.tmp"
    mv "$VOC/list/train_aug.txt.tmp" "$VOC/list/train_aug.txt"
fi

# 4. checks: line counts and every listed file present
check_list() {  # check_list FILE EXPECTED_LINES
    local file="$1" expected="$2" lines missing=0 image label
    lines="$(grep -c . "$file" || true)"
    [[ "$lines" -eq "$expected" ]] || die "$file has $lines lines, expected $expected"
    while read -r image label; do
        if [[ ! -f "$VOC/VOCdevkit/VOC2012$image" || ! -f "$VOC$label" ]]; then
            missing=$((missing + 1))
            [[ $missing -le 5 ]] && echo "prepare_voc: missing file for: $image $label" >&2
        fi
    done < <(tr -d '\r' < "$file")
    [[ $missing -eq 0 ]] || die "$missing entries of $file point to missing files"
}
check_list "$VOC/list/train_aug.txt" $NUM_TRAIN
check_list "$VOC/list/val.txt" $NUM_VAL

say "done: $VOC is ready (use data.root=$TARGET)."
say "you can delete $DOWNLOADS; check with: python -m css.data inspect --dataset voc --root $TARGET --task 15-1"
