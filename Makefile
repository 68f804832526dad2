# make demo   set-up when needed, then the main job on the built-in synthetic image and point-cloud benchmarks
# make test   set-up when needed, then the whole test suite
# make bench  the benchmarks (JSON + markdown in benchmarks/results/)
PY := .venv/bin/python

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m css.train --modality image --config configs/demo/image.yaml
	$(PY) -m css.train --modality pointcloud --config configs/demo/pointcloud.yaml

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs/demo* data/synthetic_pc benchmarks/results .pytest_cache
