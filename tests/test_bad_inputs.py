"""The bad-input catalogue: every command, as a user runs it, in a fresh working directory.

Each bad input gives one line on stderr naming the problem, exit code 2, no traceback, and
leaves the working directory (where the default MLflow store and ray_results live) as it was.
The cases run a few at once, started when the first case asks for its result: most in forks of
one process that imported the CLI's libraries once (tests/cli_forks.py: 0.3 s a case, not 8 s of
imports), the cases in FRESH as ``python -m orchestrator.cli`` in a new interpreter; what the
libraries print on import (once, in the fork server) must be nothing.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t(INFO|WARNING) \S+\.py:\d+ -- ")


def _empty(cwd):
    (cwd / "empty").mkdir()


def _corrupt(cwd):
    (cwd / "corrupt").mkdir()
    (cwd / "corrupt" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut off here")


def _bad_yaml(cwd):
    (cwd / "bad.yaml").write_text("params:\n  lr: {dist: grid, values: [1.0e-4\n")


def _unknown_key_space(cwd):
    (cwd / "keys.yaml").write_text("params:\n  learning_rate: {dist: grid, values: [1.0e-4]}\n")


def _a_file(cwd):
    (cwd / "afile").write_text("a file, not a folder")


def _store(cwd):
    """A real, empty MLflow store: run ids are looked up in it, and it must not change."""
    shutil.copy(STORE_TEMPLATE["path"], cwd / "mlflow.db")


def _finished_sweep(cwd):
    """What a finished smoke sweep leaves in its folder: its sweep.json, Tune's state under ./ray_results."""
    from orchestrator.sweep.plan import write_sweep_file

    write_sweep_file(cwd / "sweeps" / "smoke-smoke-grid-1", {"parent_run_id": UNKNOWN_RUN, "preset": "smoke",
                                                               "settings": {}, "storage_path": str(cwd / "ray_results")})


STORE_TEMPLATE = {}
NO_RAY = {"RAY_ADDRESS": None}

# (id, argv, what the error line must name (a string or a tuple of them), setup, extra env)
CASES = [
    # train: config keys and values
    ("train-unknown-preset", ["train", "--preset", "nope"], "preset='nope'", None, {}),
    ("train-unknown-key", ["train", "--preset", "smoke", "--set", "learning_rate=1"], "learning_rate", None, {}),
    ("train-wrong-type-float", ["train", "--preset", "smoke", "--set", "lr=fast"], "lr='fast'", None, {}),
    ("train-wrong-type-int", ["train", "--preset", "smoke", "--set", "max_steps=1.5"], "max_steps=1.5", None, {}),
    ("train-wrong-type-bool", ["train", "--preset", "smoke", "--set", "use_gpu=maybe"], "use_gpu='maybe'", None, {}),
    ("train-out-of-range", ["train", "--preset", "smoke", "--set", "beta1=1.5"], "beta1=1.5", None, {}),
    ("train-beta1-at-bound", ["train", "--preset", "smoke", "--set", "beta1=1"], "beta1=1", None, {}),
    ("train-zero-lr", ["train", "--preset", "smoke", "--set", "lr=0"], "lr=0", None, {}),
    ("train-negative", ["train", "--preset", "smoke", "--set", "max_steps=-5"], "max_steps=-5", None, {}),
    ("train-not-a-choice", ["train", "--preset", "smoke", "--set", "image_size=48"], "image_size=48", None, {}),
    ("train-infinite-lr", ["train", "--preset", "smoke", "--set", "lr=.inf"], "lr=inf", None, {}),
    ("train-set-without-value", ["train", "--preset", "smoke", "--set", "lr"], "--set 'lr'", None, {}),
    ("train-batch-not-divisible", ["train", "--preset", "smoke", "--set", "num_workers=3"], "batch_size=16", None, {}),
    ("train-unknown-dataset", ["train", "--preset", "smoke", "--set", "dataset=imagenet"], "dataset='imagenet'",
     None, {}),
    # train: data, stores, cluster
    ("train-missing-data-root", ["train", "--preset", "smoke", "--set", "dataset=folder", "--set",
                                 "data_root=./nowhere"], "data_root=", None, {}),
    ("train-empty-data-root", ["train", "--preset", "smoke", "--set", "dataset=mnist", "--set", "nc=1",
                               "--set", "data_root=./empty"], "data_root=", _empty, {}),
    ("train-only-corrupt-images", ["train", "--preset", "smoke", "--set", "dataset=folder", "--set",
                                   "data_root=./corrupt"], "no readable image", _corrupt, {}),
    ("train-unreachable-tracking-uri", ["train", "--preset", "smoke", "--set", "mlflow_uri=http://127.0.0.1:9"],
     "mlflow_uri='http://127.0.0.1:9'", None, {}),
    ("train-tracking-env-unreachable", ["train", "--preset", "smoke"], "mlflow_uri='http://127.0.0.1:9'", None,
     {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    ("train-store-folder-missing", ["train", "--preset", "smoke", "--set", "mlflow_uri=sqlite:///./no/dir/m.db"],
     "not a writable folder", None, {}),
    ("train-unreachable-ray-address", ["train", "--preset", "smoke"], "RAY_ADDRESS='127.0.0.1:9'", None,
     {"RAY_ADDRESS": "127.0.0.1:9"}),
    ("train-storage-path-unwritable", ["train", "--preset", "smoke", "--set", "storage_path=./afile/ray"],
     "afile/ray' is not writable", _a_file, NO_RAY),
    ("train-resources-never-met", ["train", "--preset", "smoke", "--set", "num_workers=16", "--set",
                                   "cpus_per_worker=4"], "num_workers=16", None, NO_RAY),
    # sweep
    ("sweep-malformed-space-yaml", ["sweep", "--preset", "smoke", "--space", "bad.yaml"], "not valid YAML",
     _bad_yaml, {}),
    ("sweep-space-unknown-key", ["sweep", "--preset", "smoke", "--space", "keys.yaml"], "learning_rate",
     _unknown_key_space, {}),
    ("sweep-unknown-space", ["sweep", "--preset", "smoke", "--space", "nope"], "nope", None, {}),
    ("sweep-resume-nothing", ["sweep", "--preset", "smoke", "--resume"], "--resume", None, {}),
    ("sweep-resume-other-storage", ["sweep", "--preset", "smoke", "--resume", "--set", "storage_path=./other"],
     ("storage_path='./other' holds no Tune state", "other/sweeps/smoke-smoke-grid-1)",
      "ran with storage_path='"), _finished_sweep, {}),
    ("sweep-num-samples-not-int", ["sweep", "--preset", "smoke", "--num-samples", "many"], "--num-samples", None,
     {}),
    ("sweep-trial-fits-no-node", ["sweep", "--preset", "smoke", "--set", "cpus_per_worker=64"],
     "cpus_per_worker=64", None, NO_RAY),   # refused after Ray and the MLflow server have started
    ("sweep-zero-lr", ["sweep", "--preset", "smoke", "--set", "lr=0"], "lr=0", None, {}),
    ("sweep-unknown-search", ["sweep", "--search", "bayes"], "search='bayes'", None, {}),
    ("sweep-grid-with-samples", ["sweep", "--preset", "quick", "--space", "paper-claims", "--search", "grid",
                                 "--num-samples", "3"], "num-samples=3", None, {}),
    ("sweep-claims-space-by-tpe", ["sweep", "--preset", "quick", "--space", "paper-claims", "--search", "tpe"],
     "paper-claims", None, {}),
    ("sweep-zero-seeds", ["sweep", "--preset", "smoke", "--seeds", "0"], "seeds=0", None, {}),
    ("sweep-unreachable-ray", ["sweep", "--preset", "smoke"], "RAY_ADDRESS", None, {"RAY_ADDRESS": "127.0.0.1:1"}),
    # search-study: the protocol's rules, before anything starts
    ("search-study-top-k-over-budget", ["search-study", "--preset", "search-study-smoke", "--top-k", "6"],
     "--top-k=6", None, {}),
    ("search-study-budget-below-startup", ["search-study", "--preset", "search-study-smoke", "--budget", "5",
                                           "--startup-trials", "10"], "--budget=5", None, {}),
    ("search-study-unknown-objective", ["search-study", "--preset", "search-study-smoke", "--objectives",
                                        "fd,sharpness"], "--objectives='fd,sharpness'", None, {}),
    ("search-study-resume-nothing", ["search-study", "--resume", "search-study-9"], "--resume='search-study-9'",
     None, {}),
    ("search-study-resume-new-settings", ["search-study", "--resume", "search-study-1", "--budget", "60"],
     "--budget with --resume", None, {}),
    # evaluate, sample, ui
    ("evaluate-unknown-run", ["evaluate", "--run", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    ("evaluate-no-store", ["evaluate", "--run", UNKNOWN_RUN], "no tracking store", None, {}),
    ("evaluate-run-id-path", ["evaluate", "--run", "../../etc"], "not a valid MLflow run id", None, {}),
    ("evaluate-unknown-metric", ["evaluate", "--run", UNKNOWN_RUN, "--metrics", "fid_magic"], "fid_magic", None, {}),
    ("sample-unknown-run", ["sample", "--run", UNKNOWN_RUN, "--out", "grid.png"], UNKNOWN_RUN, _store, {}),
    ("sample-no-store", ["sample", "--run", UNKNOWN_RUN, "--out", "grid.png"], (UNKNOWN_RUN, "no tracking store"),
     None, {}),
    ("sample-run-id-path", ["sample", "--run", "../../etc", "--out", "grid.png"], "not a valid MLflow run id", None,
     {}),
    ("sample-not-png", ["sample", "--run", UNKNOWN_RUN, "--out", "grid.jpg"], "out='grid.jpg'", None, {}),
    ("ui-port-out-of-range", ["ui", "--port", "70000"], "port=70000", None, {}),
    # data
    ("data-unknown-dataset", ["data", "preview", "--dataset", "imagenet", "--out", "p.png"], "imagenet", None, {}),
    ("data-zero-images", ["data", "preview", "--dataset", "synthetic-faces", "--n", "0", "--out", "p.png"], "n=0",
     None, {}),
    ("data-missing-root", ["data", "preview", "--dataset", "folder", "--data-root", "nowhere", "--out", "p.png"],
     "data_root='nowhere'", None, {}),
    ("data-empty-root", ["data", "preview", "--dataset", "mnist", "--data-root", "empty", "--out", "p.png"],
     "data_root='empty'", _empty, {}),
    ("data-only-corrupt-images", ["data", "preview", "--dataset", "folder", "--data-root", "corrupt", "--out",
                                  "p.png"], "no readable image", _corrupt, {}),
    ("data-bad-out-format", ["data", "preview", "--dataset", "synthetic-faces", "--out", "p.nope"], "out='p.nope'",
     None, {}),
    # report, latent, represent
    ("report-unknown-sweep", ["report", "--sweep", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    ("report-unknown-experiment", ["report", "--experiment", "no-such-experiment"], "no-such-experiment", _store,
     {}),
    ("latent-walk-unknown-run", ["latent", "walk", "--run", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    ("latent-sheet-run-id-path", ["latent", "sheet", "--run", "../escape"], "not a valid MLflow run id", None, {}),
    ("represent-unknown-run", ["represent", "--run", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    ("latent-represent-unknown-run", ["latent", "represent", "--run", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    # power
    ("power-ratio-below-one", ["power", "--ratio", "0.5"], "ratio=0.5", None, {}),
    ("power-unknown-space", ["power", "--space", "nope"], "nope", None, {}),
    # pilot
    ("pilot-unknown-sweep", ["pilot", "--sweep", UNKNOWN_RUN], UNKNOWN_RUN, _store, {}),
    ("pilot-bad-every", ["pilot", "--sweep", UNKNOWN_RUN, "--every", "0"], "every=0", None, {}),
]


# Cases run as a user runs them, each in a new interpreter (the rest run in forks).
FRESH = {"train-wrong-type-float", "evaluate-run-id-path", "data-unknown-dataset"}


def _snapshot(cwd):
    """Every file under cwd with a hash of its bytes."""
    return {str(p.relative_to(cwd)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(cwd.rglob("*")) if p.is_file()}


def _run_case(case, base, forks, base_env):
    """``base_env`` is a copy of os.environ taken in the main thread: pytest sets and deletes
    PYTEST_CURRENT_TEST there while these threads run, so reading os.environ here races."""
    name, argv, _, setup, env_extra = case
    cwd = base / name
    cwd.mkdir()
    if setup:
        setup(cwd)
    before = _snapshot(cwd)
    env = {**base_env, "MLFLOW_TRACKING_URI": ""}
    env.pop("RAY_ADDRESS", None)
    for key, value in env_extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if name in FRESH:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=300)
    else:
        r = subprocess.CompletedProcess(argv, *forks.run(argv, cwd, env, timeout=300))
    return r, before, _snapshot(cwd)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, forks):
    """The selected cases start at once on a small pool; each test waits for its own."""
    from mlflow import MlflowClient

    selected = {item.callspec.params["case"][0] for item in request.session.items
                if hasattr(item, "callspec") and "case" in item.callspec.params}
    base = tmp_path_factory.mktemp("bad-inputs")
    STORE_TEMPLATE["path"] = base / "template.db"
    MlflowClient("sqlite:///" + str(STORE_TEMPLATE["path"])).search_experiments()  # creates the empty store
    pool = ThreadPoolExecutor(max_workers=3)
    base_env = dict(os.environ)
    futures = {case[0]: pool.submit(_run_case, case, base, forks, base_env) for case in CASES if case[0] in selected}
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, outcomes, record_property):
    name, argv, culprit, _, _ = case
    r, before, after = outcomes[name].result()
    # Cases that get as far as starting Ray also show Ray's own timestamped start-up log lines.
    lines = [line for line in r.stderr.strip().splitlines() if not RAY_LOG_LINE.match(line)]
    record_property("stderr", r.stderr.strip())
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr + r.stdout
    assert len(lines) == 1, r.stderr
    culprits = culprit if isinstance(culprit, tuple) else (culprit,)
    assert lines[0].startswith("dcgan-lab: error: ") and all(c in lines[0] for c in culprits), lines[0]
    assert after == before, f"files changed: {set(after.items()) ^ set(before.items())}"


def test_catalogue_size():
    commands = {argv[0] for _, argv, *_ in CASES}
    assert len(CASES) >= 20 and {"train", "sweep", "report", "latent", "evaluate", "data"} <= commands


def test_catalogue_figure(outcomes, forks, figure):
    """Runs after the cases (file order): how many of them failed as they should."""
    done = {name: f.result() for name, f in outcomes.items()}
    clean = [name for name, (r, before, after) in done.items()
             if r.returncode == 2 and "Traceback" not in r.stderr and before == after]
    figure(f"bad inputs: {len(clean)} / {len(done)} exit 2 with no traceback and no file written")
    assert forks.startup_stderr == "", forks.startup_stderr[-2000:]


def test_corrupt_image_in_folder_is_skipped_with_a_count(tmp_path):
    """The chosen policy (README, "Data sets"): a readable folder with some broken files trains on
    the rest and says how many it skipped."""
    from conftest import run_cli
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 90, 200)).save(tmp_path / "imgs" / f"ok{i}.png")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = run_cli("data", "preview", "--dataset", "folder", "--data-root", "imgs", "--size", "32", "--out", "p.png",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 of 4 image files" in r.stderr and "broken.jpg" in r.stderr
    assert "wrote p.png: 3 images" in r.stdout
