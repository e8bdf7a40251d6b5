#!/usr/bin/env bash
# The wheels bench/gpu_check.py needs on the lent GPU machine and its image lacks, for its Python 3.12
# (x86-64): the Django stack the service imports, at the versions requirements.txt/constraints.txt pin.
# The image already holds torch, sentence-transformers, transformers, tokenizers, numpy, httpx,
# prometheus-client, uvloop and the rest (../.library/device/KINDS.md); the list below is what
# `manage.py serve` and `manage.py benchmark` import here minus that list.
#
#   bash bench/gpu_wheels.sh            # -> .gpu/wheels/*.whl (git-ignored), prints the total size
#
# There (carry .gpu):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .gpu/wheels/*.whl && export PYTHONPATH=/tmp/site && python3 bench/gpu_check.py run --model .gpu/model --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(
  Django==5.2.19 asgiref==3.13.0 sqlparse==0.6.1 djangorestframework==3.18.3 adrf==0.1.14
  djangorestframework-api-key==3.1.0 drf-spectacular==0.30.0 drf-spectacular-sidecar==2026.10.1 inflection==0.5.1
  uritemplate==4.2.0 dj-database-url==3.1.2 psycopg==3.3.9 psycopg-binary==3.3.9
  channels==4.3.2 daphne==4.2.3 Twisted==26.10.0 Incremental==24.11.0 constantly==23.10.4 hyperlink==21.0.0
  zope.interface==8.7 autobahn==26.10.2 txaio==26.6.1 cbor2==6.3.0 pyOpenSSL==26.4.0 cryptography==50.0.2
  cffi==2.1.1 pycparser==3.12 service-identity==26.1.0
  uvicorn==0.54.0 httptools==0.9.0 websockets==17.4 orjson==3.13.0 hdrhistogram==0.10.8
)
rm -rf .gpu/wheels
mkdir -p .gpu/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 \
  --platform manylinux_2_31_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 \
  --platform any -d .gpu/wheels "${PACKAGES[@]}"
ls .gpu/wheels | wc -l | xargs echo "wheels:"
du -sh .gpu
