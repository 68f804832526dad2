# make demo   set-up when needed, then the main job on the built-in synthetic image and point-cloud benchmarks
#             (rooms in 1 m blocks with DGCNN, and whole with the sparse-voxel UNet), PLY / PNG predictions of
#             one test room (runs/demo_pc_lgkd/step*/predictions, runs/demo_scenes_lgkd/step2/predictions)
# make test   set-up when needed, then the whole test suite
# make bench  the benchmarks (JSON + markdown in benchmarks/results/)
PY := .venv/bin/python

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m css.train --modality image --config configs/demo/image.yaml
	$(PY) -m css.train --modality pointcloud --config configs/demo/pointcloud.yaml
	@# one test room predicted by the models of steps 0, 1 and 2: PLY files (prediction, ground
	@# truth, errors) and a PNG (GT | prediction | errors) per step, to see what each step keeps
	for t in 0 1 2; do $(PY) -m css.predict --checkpoint runs/demo_pc_lgkd/step$$t/model.pt --split test \
	  --scenes test_room_000 --png --out runs/demo_pc_lgkd/step$$t/predictions || exit 1; done
	@# the same rooms whole, with the sparse-voxel UNet (docs/pointcloud-scenes.md), and one test room predicted whole
	$(PY) -m css.train --modality pointcloud --config configs/demo/scenes.yaml
	$(PY) -m css.predict --checkpoint runs/demo_scenes_lgkd/step2/model.pt --split test --scenes test_room_000 --png \
	  --out runs/demo_scenes_lgkd/step2/predictions
	@# the run report of the demos, to open in a browser (docs/report.md)
	$(PY) -m css.report --html runs/demo_report runs/demo_lgkd runs/demo_pc_lgkd runs/demo_scenes_lgkd

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs/demo* data/synthetic_pc benchmarks/results .pytest_cache test-artifacts
