"""The installed versions a run records (trainables/versions.py) and what the report does with them."""
import hashlib
import itertools
import math
import os

import pytest
from conftest import ROOT
from test_report import LEVELS, _flat_history, _log_fd, _log_run, _store

from orchestrator.report.build import build_report
from trainables.errors import UserError
from trainables.versions import LOCK_FILE, locked_versions, software_params


@pytest.mark.skipif(os.environ.get("DCGAN_LAB_DRIFT") == "1", reason="make drift installs the newest versions, not the lock")
def test_this_install_is_the_lock():
    """make sweep, make test and CI install requirements.lock: every run of them records its digest."""
    import numpy
    import torch

    params, tags = software_params()
    assert LOCK_FILE == ROOT / "requirements.lock"
    assert tags == {}, tags.get("lock_drift")
    assert params == {"torch_version": torch.__version__, "torchvision_version": params["torchvision_version"],
                      "numpy_version": numpy.__version__,
                      "lock_sha": hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]}
    assert torch.__version__.split("+")[0] == locked_versions()["torch"]


def test_a_drifted_install_is_named(tmp_path):
    """An install whose versions differ from the lock says which, and records no lock digest."""
    import numpy

    lock = tmp_path / "requirements.lock"
    lines = [line for line in LOCK_FILE.read_text().splitlines() if not line.startswith("numpy==")]
    lock.write_text("\n".join(lines + ["numpy==0.0.1", "not-installed-package==1.0"]) + "\n")
    params, tags = software_params(lock)
    assert params["lock_sha"] == "unlocked"
    assert f"numpy {numpy.__version__}!=0.0.1" in tags["lock_drift"]
    assert "not-installed-package missing!=1.0" in tags["lock_drift"]
    assert software_params(tmp_path / "absent.lock")[0]["lock_sha"] == "none"


def test_runs_of_two_torch_versions_are_not_pooled_unless_asked(tmp_path):
    """Same seeds under another torch train other curves: the report refuses to pool them in one
    line naming both versions; --pool reports each separately; the versions are in runs.csv."""
    uri, c, exp, parent = _store(tmp_path)
    for torch_version, seed in itertools.product(("2.13.0+cpu", "2.14.1+cu130"), range(3)):
        for lr in LEVELS[0]:
            fd = math.exp(_log_fd(lr, "0.5", "paper", seed))
            _log_run(c, exp, parent, {"lr": lr, "seed": seed}, {"fd_final": fd, "diverged": 0.0},
                     _flat_history(fd, seed), base={"torch_version": torch_version, "lock_sha": "abc"})
    with pytest.raises(UserError, match=r"^runs differ in torch_version: 2\.13\.0\+cpu, 2\.14\.1\+cu130; .*--pool"):
        build_report(uri, tmp_path / "refused", sweep=parent)
    assert not (tmp_path / "refused").exists()
    result = build_report(uri, tmp_path / "pooled", sweep=parent, pool=True)
    assert sorted(s["stratum"] for s in result["claims_summary"]) == ["torch_version=2.13.0+cpu",
                                                                      "torch_version=2.14.1+cu130"]
    runs_csv = (tmp_path / "pooled" / "runs.csv").read_text().splitlines()
    assert "torch_version" in runs_csv[0] and "lock_sha" in runs_csv[0]
    assert "Software: torch 2.13.0+cpu, 2.14.1+cu130" in (tmp_path / "pooled" / "report.md").read_text()
