#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (its image has torch, torchvision, numpy,
# pandas, scipy, scikit-learn, matplotlib, seaborn, pillow, pyyaml, tqdm; not pydantic or
# MLflow) for its Python 3.12, into .whl/ (git-ignored through .git/info/exclude): about 35 MB,
# under the 64 MiB that travels with a device call. Then: benchmarks/device/check.sh there.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl /tmp/bioclf-wheels
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d /tmp/bioclf-wheels "mlflow==3.17.*" "pydantic>=2.5"
# Keep what the image does not have (one version of each: two stop the install).
present=" absl-py aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi charset-normalizer click \
cloudpickle contourpy cycler filelock fonttools frozenlist fsspec h11 idna jinja2 joblib kiwisolver markupsafe \
matplotlib multidict narwhals numpy packaging pandas pillow propcache protobuf pyarrow pyparsing python-dateutil \
pyyaml requests scikit-learn scipy six threadpoolctl typing-extensions urllib3 werkzeug yarl zipp "
for f in /tmp/bioclf-wheels/*.whl; do
  name=$(basename "$f" | cut -d- -f1 | tr 'A-Z_' 'a-z-')
  case "$present" in *" $name "*) ;; *) cp "$f" .whl/ ;; esac
done
du -sh .whl
