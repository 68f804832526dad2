#!/usr/bin/env bash
# GPU checks in one prepared run, for a machine with one CUDA GPU and no internet (it uses that
# machine's python3 and torch; the repository comes in through PYTHONPATH, no install):
#   1. the synthetic demo, whole, through the controller on CUDA with fp16 AMP (GradScaler);
#   2. LGKD vs boolean masks on the GPU; one DeepLabV3-R101 LGKD training step at the reference
#      batch 24, 512x512, fp32/fp16/bf16, pure-torch norm;
#   3. when .whl/ holds the inplace-abn sdist (+ setuptools_scm, vcs_versioning, packaging wheels),
#      a CUDA build of it, then the bn-vs-InPlaceABN test on CUDA, the precision tests, the same
#      training step with InPlaceABN, and a short demo run with model.norm=iabn;
#   2c. point clouds: one DGCNN training step at B=32, N=2048 in fp32/fp16/bf16, and the
#      point-cloud demo on CUDA with fp16;
#   2d. point clouds: the full-coverage evaluation's cost per million points, FPS / kNN /
#      pseudo-labelling times, and a 3DPC-CISS demo under protocol reference (pooled kNN on CUDA);
#   2e. DDP over NCCL: the point-cloud demo, shortened, on 2 processes (one per GPU; skipped with
#      one GPU: NCCL refuses two processes on one device), and whether the deprecated-collective
#      FutureWarning or DDP's "Grad strides do not match bucket view strides" appears
#      (docs/clusters.md, docs/pointcloud-model.md#memory-layout);
#   2f. whole scenes (docs/pointcloud-scenes.md): spconv from .whl/ (spconv-cu120 and cumm-cu120 2.3.8 wheels
#      with pccm, ccimport, pybind11, fire) when python3 lacks it; the sparse UNet's training step at
#      50k / 100k points and a ScanNet-sized scan (150k points, 2 cm grid) in fp32 / fp16 / bf16 with the
#      scene metric's time, and the whole-scene demo on CUDA with fp16;
#   4. the whole test suite, if time is left.
# Results land in $OUT (default benchmarks/results/gpu): gpu_check.log and results.tar.gz.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
RES=/tmp/css_gpu && rm -rf $RES && mkdir -p $RES
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=python3
T0=$SECONDS
DEADLINE=${DEADLINE:-440}  # seconds; every stage is cut to what is left, so the results still come back
say() { echo "=== [$((SECONDS - T0))s] $*"; }
cap() { local left=$((DEADLINE - (SECONDS - T0))); [ $left -lt 5 ] && left=5; [ $1 -lt $left ] && echo $1 || echo $left; }

nvidia-smi -L
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nproc

BUILD=""
if ls .whl/inplace-abn-*.tar.gz >/dev/null 2>&1; then
  CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
  [ -d /usr/local/cuda/lib64 ] && CUDA_HOME=/usr/local/cuda
  say "building inplace-abn in the background (CUDA_HOME=$CUDA_HOME)"
  ( $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=10 CUDA_HOME=$CUDA_HOME \
      $PY -m pip install --no-index --no-deps --no-build-isolation --target /tmp/iabn .whl/inplace-abn-*.tar.gz
  ) > $RES/iabn_build.log 2>&1 &
  BUILD=$!
fi

say "1. demo (configs/demo/image.yaml) on CUDA, fp16"
timeout $(cap 150) $PY -m css.train --modality image --config configs/demo/image.yaml name=demo_gpu_fp16 \
  device=cuda train.precision=fp16 data.num_workers=4 output_dir=$RES/runs
echo "demo rc=$?"

say "2a. LGKD loss on CUDA"
timeout $(cap 60) $PY benchmarks/bench_lgkd.py --device cuda --quick; echo "rc=$?"
say "2b. training step, bn"
timeout $(cap 150) $PY benchmarks/bench_train_step.py --device cuda --norms bn --quick; echo "rc=$?"
cp benchmarks/results/lgkd_cuda.* benchmarks/results/train_step_cuda.* $RES/ 2>/dev/null
mv $RES/train_step_cuda.json $RES/train_step_cuda_bn.json 2>/dev/null
mv $RES/train_step_cuda.md $RES/train_step_cuda_bn.md 2>/dev/null

say "2c. point clouds: DGCNN training step at B=32, N=2048 (fp32/fp16/bf16), then the point-cloud demo, fp16"
timeout $(cap 150) $PY benchmarks/bench_dgcnn.py --device cuda --quick; echo "rc=$?"
cp benchmarks/results/dgcnn_step_cuda.* $RES/ 2>/dev/null
timeout $(cap 120) $PY -m css.train --modality pointcloud --config configs/demo/pointcloud.yaml name=demo_pc_gpu_fp16 \
  device=cuda train.precision=fp16 data.root=$RES/synthetic_pc output_dir=$RES/runs
echo "pc demo rc=$?"

say "2d. point clouds: full-coverage evaluation cost, FPS / kNN / pseudo-labels, a 3DPC-CISS demo (pooled kNN on CUDA)"
timeout $(cap 120) $PY benchmarks/bench_coverage.py --device cuda --quick; echo "rc=$?"
cp benchmarks/results/coverage.json $RES/coverage_cuda.json 2>/dev/null
cp benchmarks/results/coverage.md $RES/coverage_cuda.md 2>/dev/null
timeout $(cap 90) $PY benchmarks/bench_fps.py --device cuda --all --quick; echo "rc=$?"
cp benchmarks/results/fps_cuda.* $RES/ 2>/dev/null
timeout $(cap 120) $PY -m css.train --modality pointcloud --config configs/demo/pointcloud.yaml name=demo_pc_ciss_gpu \
  method.name=3dpc-ciss protocol=reference device=cuda data.root=$RES/synthetic_pc output_dir=$RES/runs
echo "pc 3dpc-ciss demo rc=$?"

say "2e. DDP over NCCL: the point-cloud demo on 2 processes, and its warnings"
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  timeout $(cap 150) $PY -m torch.distributed.run --nproc_per_node 2 -m css.train --modality pointcloud \
    --config configs/demo/pointcloud.yaml name=demo_pc_nccl device=cuda train.max_iters_per_epoch=4 \
    data.root=$RES/synthetic_pc output_dir=$RES/runs > $RES/ddp_nccl.log 2>&1
  echo "nccl demo rc=$?"
  echo "deprecated collective warnings: $(grep -c 'nn.functional.all_reduce is deprecated' $RES/ddp_nccl.log)"
  echo "grad stride warnings: $(grep -c 'Grad strides do not match bucket view strides' $RES/ddp_nccl.log)"
else
  echo "skipped: one GPU (NCCL needs one device per process)"
fi

say "2f. whole scenes: the sparse UNet step in fp32/fp16/bf16, the scene metric, the scene demo in fp16"
if ! $PY -c "import spconv.pytorch" 2>/dev/null && ls .whl/spconv_cu*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/spconv_cu*.whl .whl/cumm_cu*.whl \
    .whl/pccm-*.whl .whl/ccimport-*.whl .whl/pybind11-*.whl .whl/fire-*.whl; echo "spconv install rc=$?"
fi
if $PY -c "import spconv.pytorch" 2>/dev/null; then
  timeout $(cap 150) $PY benchmarks/bench_scenes.py --device cuda --quick; echo "rc=$?"
  cp benchmarks/results/scenes_step_cuda.* $RES/ 2>/dev/null
  timeout $(cap 120) $PY -m css.train --modality pointcloud --config configs/demo/scenes.yaml name=demo_scenes_gpu \
    device=cuda train.precision=fp16 data.root=$RES/synthetic_pc output_dir=$RES/runs
  echo "scene demo rc=$?"
else
  echo "skipped: no spconv for CUDA (put its wheels in .whl/)"
fi

if [ -n "$BUILD" ]; then
  say "3. waiting for the inplace-abn build"
  wait $BUILD; echo "build rc=$?"; tail -3 $RES/iabn_build.log
  if PYTHONPATH=$PYTHONPATH:/tmp/iabn $PY -c "import inplace_abn"; then
    export PYTHONPATH=$PYTHONPATH:/tmp/iabn
    say "3a. bn vs iabn (CUDA) and precision tests"
    timeout $(cap 120) $PY -m pytest -q -p no:cacheprovider tests/test_image_model.py tests/test_image_model_weights.py tests/test_precision.py -k "iabn or precision" -rs
    say "3b. training step, iabn"
    timeout $(cap 150) $PY benchmarks/bench_train_step.py --device cuda --norms iabn --quick; echo "rc=$?"
    cp benchmarks/results/train_step_cuda.* $RES/ 2>/dev/null
    say "3c. short demo with InPlaceABN, fp16"
    timeout $(cap 100) $PY -m css.train --config configs/demo/image.yaml name=demo_gpu_iabn device=cuda \
      train.precision=fp16 model.norm=iabn data.num_workers=4 train.epochs=3 train.step0.epochs=4 output_dir=$RES/runs
    echo "rc=$?"
  fi
fi

if [ $((DEADLINE - (SECONDS - T0))) -gt 90 ]; then
  say "4. whole test suite on the GPU machine"
  timeout $(cap 400) $PY -m pytest -q -p no:cacheprovider -n 8 tests > $RES/pytest_all.log 2>&1
  echo "rc=$?"; tail -25 $RES/pytest_all.log
fi
say "done"
(cd $RES && find runs -name 'results.json' -o -name 'log.txt' -o -name 'results.csv' | tar czf results_runs.tgz -T - 2>/dev/null)
tar czf "$OUT/results.tar.gz" -C $RES --exclude=runs .
