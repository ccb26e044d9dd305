"""The frozen evaluators: the shipped files are the manifest's (digests), cover every preset, give the
same FD whatever the CPU's instruction set, are refused once changed, and are never retrained
silently; `dcgan-lab evaluator train` adds a new version beside the old ones. The report refuses
to pool runs measured with different evaluators."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainables.errors import UserError
from trainables.metrics import frozen
from trainables.metrics.evaluators import EVALUATORS, evaluator_shipped, get_evaluator

PRESETS = Path(__file__).resolve().parents[1] / "orchestrator" / "presets"
FACES_32 = "synthetic-faces-32px-nc3-v1.pt"


def test_the_manifest_digests_match_the_shipped_files():
    entries = frozen.read_manifest(frozen.WEIGHTS_DIR)
    files = sorted(p.name for p in frozen.WEIGHTS_DIR.glob("*.pt"))
    assert sorted(e["file"] for e in entries) == files
    for e in entries:
        assert frozen.sha256_of(frozen.WEIGHTS_DIR / e["file"]) == e["sha256"], e["file"]
        assert e["file"] == frozen.file_name(e["dataset"], e["image_size"], e["nc"], e["version"])
        assert {"n_train", "epochs", "seconds"} <= set(e["training"]) and e["held_out"]["n"] > 0
        assert e["torch_version"] and e["date"]
    assert sum((frozen.WEIGHTS_DIR / f).stat().st_size for f in files) < 12e6   # a few MB


def test_every_preset_and_fashion_mnist_measure_with_a_shipped_evaluator():
    from orchestrator.config import load_preset
    from trainables.config import Config

    needed = {("fashion-mnist", 32, 1)}
    for path in PRESETS.glob("*.yaml"):
        preset = {**{k: getattr(Config(), k) for k in ("dataset", "image_size", "nc")}, **load_preset(path.stem)}
        if preset["dataset"] in EVALUATORS:
            needed.add((preset["dataset"], preset["image_size"], preset["nc"]))
    assert ("synthetic-faces", 32, 3) in needed and ("synthetic-faces", 64, 3) in needed
    # Data sets not installed here (paper-faces' CelebA): the error says how to get the data and make it.
    elsewhere = {key for key in needed if key[0] in frozen.NOT_INSTALLED and key[0] != "fashion-mnist"}
    missing = [key for key in sorted(needed - elsewhere) if not evaluator_shipped(*key)]
    assert not missing
    for dataset, size, nc in elsewhere:
        with pytest.raises(frozen.FrozenEvaluatorError, match="once its data is installed"):
            get_evaluator(dataset, size, nc=nc)


FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION_ROOT / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_the_fashion_evaluator_scores_its_manifest_accuracy_on_the_10000_test_images(figure):
    from trainables.metrics.evaluators import held_out_scores

    evaluator = get_evaluator("fashion-mnist", 32, nc=1)
    shipped = evaluator.entry
    accuracy = held_out_scores(evaluator, n=10_000, data_root=str(FASHION_ROOT))["class_accuracy"]
    figure(f"{shipped['file']}: trained on {shipped['training']['n_train']} images x {shipped['training']['epochs']} "
           f"epochs; held-out accuracy here {accuracy:.4f} on 10,000 test images (manifest "
           f"{shipped['held_out']['class_accuracy']})")
    assert shipped["training"]["n_train"] == 60_000 and shipped["held_out"]["n"] == 10_000
    assert accuracy == pytest.approx(shipped["held_out"]["class_accuracy"], abs=1e-3) and accuracy > 0.9


def test_an_evaluator_not_made_says_how_to_make_it():
    with pytest.raises(frozen.FrozenEvaluatorError,
                       match=r"^no frozen evaluator for dataset='synthetic-faces' at image_size=16, nc=3 .*"
                             r"`dcgan-lab evaluator train --dataset synthetic-faces --size 16 --nc 3`$"):
        get_evaluator("synthetic-faces", 16)
    with pytest.raises(UserError, match=r"`dcgan-lab evaluator train --dataset mnist --size 32 --nc 1` once its "
                                        r"data is installed \(README"):
        get_evaluator("mnist", 32, nc=1)


def _copy_shipped(tmp_path):
    folder = tmp_path / "evaluators"
    shutil.copytree(frozen.WEIGHTS_DIR, folder)
    return folder


def test_a_tampered_or_missing_weight_file_is_refused_in_one_line(tmp_path, forks):
    folder = _copy_shipped(tmp_path)
    path = folder / FACES_32
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01   # one bit of one weight
    path.write_bytes(bytes(data))
    shipped = frozen.find_entry("synthetic-faces", 32, 3, folder)["sha256"]
    changed = frozen.sha256_of(path)
    expected = f"evaluator file {path} has sha256 {changed}, the manifest says {shipped}: refusing"
    with pytest.raises(frozen.FrozenEvaluatorError, match="^" + expected):
        get_evaluator("synthetic-faces", 32, folder=folder)

    # A run that would measure with it stops before training, one line, exit 2 (auto included).
    env = {frozen.DIR_ENV: str(folder), "DCGAN_LAB_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": ""}
    r = forks.cli("train", "--preset", "smoke", "--set", f"mlflow_uri=sqlite:///{tmp_path}/m.db",
                  "--set", f"storage_path={tmp_path}/ray", cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.startswith(f"dcgan-lab: error: {expected}"), r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "ray").exists()

    path.unlink()
    r = forks.cli("evaluator", "list", "--dir", str(folder), env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"evaluator file {path} is missing (manifest sha256 {shipped})" in r.stderr


def test_train_adds_a_new_version_and_never_overwrites_one(tmp_path, forks):
    folder = tmp_path / "evaluators"
    args = ("evaluator", "train", "--dataset", "synthetic-faces", "--size", "16", "--out", str(folder),
            "--n-train", "300", "--epochs", "1")
    first = forks.cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    v1 = json.loads(first.stdout)
    v1_bytes = (folder / v1["file"]).read_bytes()
    second = forks.cli(*args, "--seed", "1")
    assert second.returncode == 0, second.stderr[-2000:]
    v2 = json.loads(second.stdout)
    assert (v1["file"], v2["file"]) == ("synthetic-faces-16px-nc3-v1.pt", "synthetic-faces-16px-nc3-v2.pt")
    assert (folder / v1["file"]).read_bytes() == v1_bytes and v1["sha256"] != v2["sha256"]
    assert [e["version"] for e in frozen.read_manifest(folder)] == [1, 2]
    assert v2["training"]["n_train"] == 300 and v2["held_out"]["n"] == 2000
    evaluator = get_evaluator("synthetic-faces", 16, folder=folder)   # the newest version
    assert (evaluator.version, evaluator.sha256) == (2, v2["sha256"]) and evaluator.key.endswith(v2["sha256"][:12])
    listed = forks.cli("evaluator", "list", "--dir", str(folder))
    assert listed.returncode == 0 and "synthetic-faces-16px-nc3-v2.pt  sha256 " + v2["sha256"][:12] in listed.stdout

    bad = forks.cli("evaluator", "train", "--dataset", "lsun", "--size", "32", "--out", str(folder))
    assert bad.returncode == 2 and "dataset='lsun' has no labels" in bad.stderr
    bad = forks.cli("evaluator", "train", "--dataset", "synthetic-faces", "--size", "24", "--out", str(folder))
    assert bad.returncode == 2 and "image_size=24 is not allowed: a power of two" in bad.stderr


# Two fixed generators, the shipped faces evaluator and reals embedded in this process: FDs on
# stdout (oneDNN's verbose lines name each convolution's kernel there too). One G has seeded random
# weights (FD about 500); the other replays held-out faces (FD about 4, where a change in the
# features weighs most).
FD_SCRIPT = """
import torch
from trainables.metrics.evaluate import evaluate_generator
from trainables.metrics.evaluators import get_evaluator, real_batches
from trainables.models import Generator, weights_init
torch.set_num_threads(1)
torch.manual_seed(0)
random_g = Generator(nz=100, ngf=32, nc=3, image_size=32).apply(weights_init).eval()


class Replay(torch.nn.Module):   # held-out faces in order, whatever z
    def __init__(self):
        super().__init__()
        self.images, self.next = torch.cat([x for x, _ in real_batches("synthetic-faces", 32, 3, "test", 2000)]), 0

    def forward(self, z):
        self.next += len(z)
        return self.images[self.next - len(z):self.next]


for netG in (random_g, Replay()):
    out = evaluate_generator(netG, nz=100, z_dist="normal", dataset="synthetic-faces", image_size=32, n=2000,
                             batch_size=500, evaluator=get_evaluator("synthetic-faces", 32), metrics=["fd"])
    print("FD=" + repr(out["fd_faces"]), flush=True)
"""


def _fd_in_a_process(tmp_path, name, isa=None):
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", frozen.DIR_ENV)}
    env["DCGAN_LAB_CACHE"] = str(tmp_path / name)   # its own reference embedding, at its own ISA
    env["ONEDNN_VERBOSE"] = "1"
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    r = subprocess.run([sys.executable, "-c", FD_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    kernels = sorted({line.split(",")[6] for line in lines if ",exec,cpu,convolution," in line})
    return [float(line[3:]) for line in lines if line.startswith("FD=")], "/".join(kernels)


@pytest.mark.slow
def test_the_shipped_faces_evaluator_gives_one_fd_whatever_the_isa(tmp_path, figure):
    avx2, avx2_kernels = _fd_in_a_process(tmp_path, "avx2", "AVX2")
    default, default_kernels = _fd_in_a_process(tmp_path, "default")
    for name, a, b in zip(("random G", "held-out faces"), avx2, default):
        figure(f"fd_faces of {name} (n=2000 fakes and reals), shipped {FACES_32}: ONEDNN_MAX_CPU_ISA=AVX2 {a:.6f} "
               f"(convolutions {avx2_kernels}), default {b:.6f} (convolutions {default_kernels}), "
               f"relative difference {abs(a - b) / b:.2e}")
    assert avx2_kernels == "jit:avx2"   # the limit took effect
    assert len(avx2) == len(default) == 2 and avx2 == pytest.approx(default, rel=5e-3)


def _run(sha, image_size="32"):
    params = {"dataset": "synthetic-faces", "image_size": image_size, "max_steps": "100", "eval_n": "1000"}
    if sha is not None:
        params["evaluator_sha"] = sha
    return SimpleNamespace(data=SimpleNamespace(params=params, tags={"status": "finished", "final_step": "100"},
                                                metrics={"fd_faces": 10.0}))


def test_the_report_pools_runs_of_one_evaluator_only():
    from orchestrator.report.data import strata

    a, b = "a" * 64, "b" * 64
    assert list(strata([_run(a), _run(a)])) == [""]
    assert list(strata([_run(None), _run(None)])) == [""]   # old runs without the param pool together
    with pytest.raises(UserError, match=f"^runs differ in evaluator_sha: {a}, {b}; .*--pool"):
        strata([_run(a), _run(b), _run(a)])
    pooled = strata([_run(a), _run(b), _run(a)], pool=True)
    assert {label: len(runs) for label, runs in pooled.items()} == {f"evaluator_sha={a}": 2,
                                                                     f"evaluator_sha={b}": 1}
