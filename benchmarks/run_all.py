"""``make bench``: run every benchmark; each writes JSON + markdown into benchmarks/results/."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_lgkd.py", "bench_data.py", "bench_train_step.py", "bench_dgcnn.py", "bench_pc_data.py", "bench_fps.py",
           "bench_coverage.py", "bench_scenes.py"]
# bench_process_count.py trains the demo 7 times (about an hour on 2 cores): run it on its own.

if __name__ == "__main__":
    quick = ["--quick"] if "--quick" in sys.argv else []
    failed = [b for b in BENCHES if subprocess.call([sys.executable, str(HERE / b), *quick]) != 0]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
    print(f"results in {HERE / 'results'}")
