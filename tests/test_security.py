"""Safe by default: planted pickles are refused, servers bind 127.0.0.1, paths stay in their folder.

(cluster.yaml's credentials and open ports: tests/test_cluster_yaml.py.)
"""
import os
import sys

import pytest
import torch
import yaml

from orchestrator.config import resolve_config
from trainables.errors import UserError


class _Payload:
    """Unpickling this runs ``touch marker``: what a planted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"netG": _Payload(marker)}, path)
    return path


def test_planted_pickle_would_run(tmp_path):
    """The control: loading the planted file without weights_only runs its code."""
    marker = tmp_path / "pwned"
    torch.load(_plant(tmp_path / "state.pt", marker), weights_only=False)
    assert marker.exists()


def test_planted_checkpoint_is_refused(tmp_path, figure):
    from trainables.checkpoints import CHECKPOINT_FILE, load_safe

    marker = tmp_path / "pwned"
    path = _plant(tmp_path / "checkpoint_000001" / CHECKPOINT_FILE, marker)
    with pytest.raises(UserError, match="refused: not a plain weights file") as err:
        load_safe(path)
    assert not marker.exists()
    figure(f"planted checkpoint: {err.value}")


def test_planted_generator_artifact_is_refused(tmp_path, mlflow_uri, capsys, figure):
    """A run whose model/generator.pt is a planted pickle: ``sample`` (and every command that
    reloads G) refuses it with one line, runs nothing and writes nothing."""
    from orchestrator.cli import main
    from trainables import store
    from trainables.run_logger import MODEL_DIR

    marker = tmp_path / "pwned"
    cfg = resolve_config("smoke")
    run_id = store.start_run(mlflow_uri, cfg.experiment, "planted", cfg.to_dict(), {})
    model = tmp_path / "upload"
    _plant(model / "generator.pt", marker)
    (model / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    store.client(mlflow_uri).log_artifacts(run_id, str(model), MODEL_DIR)

    out = tmp_path / "grid.png"
    assert main(["sample", "--run", run_id, "--out", str(out), "--mlflow-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    figure(f"planted generator.pt: {err[-1]}")
    assert len(err) == 1 and "generator.pt: refused: not a plain weights file" in err[0]
    assert not marker.exists() and not out.exists()


def test_ui_binds_localhost():
    from orchestrator.ui import ui_command

    argv = ui_command("sqlite:///mlflow.db", 5000)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in argv


@pytest.mark.slow
def test_local_ray_has_token_auth_and_a_localhost_dashboard(tmp_path, figure):
    """The Ray that ``dcgan-lab`` starts: token authentication on, its dashboard (if any) on
    127.0.0.1 only."""
    import subprocess

    code = ("import ray; from orchestrator.ray_run import init_ray; init_ray(); "
            "from ray._private.authentication.authentication_utils import is_token_auth_enabled; "
            "info = ray._private.worker.global_worker.node.address_info; "
            "print('TOKEN_AUTH', is_token_auth_enabled()); "
            "print('DASHBOARD', info.get('webui_url') or 'off'); ray.shutdown()")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    url = [line.split(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith("DASHBOARD")][0]
    figure(f"Ray of init_ray(): dashboard {url}; token auth: {'TOKEN_AUTH True' in r.stdout}")
    assert url == "off" or url.startswith("127.0.0.1:"), url
    assert "TOKEN_AUTH True" in r.stdout


@pytest.mark.parametrize("name", ["../../escape", "..", "a/../../escape", "/etc/passwd"])
def test_names_cannot_escape_the_output_folder(name, tmp_path, monkeypatch):
    """Run ids and names from the user or the store become one path component below the
    command's output folder, or are refused."""
    from orchestrator import tracking
    from orchestrator.report.build import default_out

    monkeypatch.chdir(tmp_path)
    out = default_out(name)  # report --experiment/--sweep NAME
    assert len(out.parts) == 2 and out.parts[0] == "reports" and out.resolve().parent == tmp_path / "reports"
    with pytest.raises(UserError, match="not a valid MLflow run id"):
        tracking.get_run("sqlite:///" + str(tmp_path / "mlflow.db"), name)  # every --run ID goes through it


def test_sweep_folder_from_a_space_path_stays_in_sweeps(tmp_path, monkeypatch):
    from orchestrator.sweep.plan import sweep_dir
    from search_spaces.loader import load_space

    (tmp_path / "outside.yaml").write_text("params:\n  lr: {dist: grid, values: [1.0e-4]}\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    space = load_space("../outside.yaml")
    d = sweep_dir("smoke", space.name, "grid", resume=False)
    assert d.parent == work / "sweeps" and d.name == "smoke-outside-grid-1"
