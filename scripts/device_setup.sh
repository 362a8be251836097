# Source on the lent GPU machine (BENCHMARKS.md, GPU section): `source scripts/device_setup.sh`.
# Its image has CUDA 13, PyTorch and onnxruntime 1.30 for the CPU only, and nothing can be downloaded there, so
# onnxruntime-gpu travels here as pieces of at most 56 MiB in .whl/ (git-ignored; made by `make device-wheels`,
# carried one piece per call while the machine stays warm), with the official package's pinned wheels in
# .whl/official (carried beside the last piece). This joins the pieces, installs the wheels without their
# dependencies (the image has the rest) into /tmp/site, and puts it and this checkout's packages on the path.
wheel=$(ls .whl/*.whl.part-aa 2>/dev/null | head -1)
if [ -z "$wheel" ]; then echo "no .whl/*.whl.part-aa: carry the pieces first (BENCHMARKS.md, GPU)"; return 1; fi
name=$(basename "${wheel%.part-aa}")
mkdir -p /tmp/wheels && cat "${wheel%.part-aa}".part-* > "/tmp/wheels/$name"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "/tmp/wheels/$name" || return 1
# the official package and its pins (transformers 4.57.3, not the image's 5.x), for scripts/bench.py --cuda
if ls .whl/official/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/official/*.whl || return 1
else
  echo "no .whl/official: the official package cannot run here (scripts/bench.py --cuda needs it; gpu_check.py does not)"
fi
export PYTHONPATH="/tmp/site:$PWD/runtime:$PWD/export${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())"
