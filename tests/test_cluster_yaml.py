"""cluster.yaml: valid for Ray's own launcher schema, no credentials, and nothing but SSH open to the world.

Checks run on the config as ``ray up`` prepares it (defaults merged), without contacting AWS.
"""
import copy
import re
import subprocess

import pytest
import yaml
from conftest import ROOT

CLUSTER_YAML = ROOT / "cluster.yaml"
WORLD = ("0.0.0.0/0", "::/0")
PRIVATE_IP = '$(hostname -I | cut -d" " -f1)'  # the head's first (VPC) address


@pytest.fixture(scope="module")
def prepared():
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(yaml.safe_load(CLUSTER_YAML.read_text())))


def test_ray_validates_it(prepared):
    from ray.autoscaler._private.util import validate_config

    validate_config(prepared)  # ray-schema.json plus the launcher's cross-field checks
    assert prepared["provider"]["type"] == "aws"


def test_node_types(prepared):
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    gpu = [t for t in prepared["available_node_types"].values() if t["resources"].get("GPU", 0) > 0]
    assert len(gpu) == 1 and gpu[0]["min_workers"] == 0 and gpu[0]["max_workers"] == 4
    assert gpu[0]["node_config"]["InstanceType"].startswith("g")


def test_project_is_copied_and_installed(prepared):
    assert prepared["file_mounts"] == {"~/dcgan-lab": "."}
    assert ".gitignore" in prepared["rsync_filter"]  # keeps .venv, data and stores on the laptop
    for side in ("head_setup_commands", "worker_setup_commands"):   # setup_commands merged into both
        (install,) = [c for c in prepared[side] if "-e ~/dcgan-lab" in c]
        # The lock's versions, then the project without a resolve of its own (which would take the newest).
        assert install == "pip install -q -r ~/dcgan-lab/requirements.lock && pip install -q --no-deps -e ~/dcgan-lab"
        assert not any("pip install" in c and "requirements.lock" not in c for c in prepared[side]), prepared[side]
        assert any("python3.11 -m venv" in c for c in prepared[side])   # the Python the lock was resolved on


def test_the_lock_pins_everything_the_nodes_need():
    """requirements.lock pins one version of each package, boto3 (the head's) included, and the
    Python it was resolved on is the nodes' (the lock's header names it)."""
    import re

    lock = (ROOT / "requirements.lock").read_text()
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==\S+", p) for p in pins), pins
    names = [p.split("==")[0].lower() for p in pins]
    assert len(names) == len(set(names))
    assert {"torch", "torchvision", "ray", "mlflow", "optuna", "numpy", "boto3"} <= set(names)
    assert "CPython 3.11" in lock.splitlines()[1]


def test_commands_are_valid_bash(prepared):
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in prepared[key]:
            result = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert result.returncode == 0, f"{key}: {cmd!r}: {result.stderr}"


def test_no_credentials():
    text = CLUSTER_YAML.read_text()
    for pattern in (r"aws_access_key_id", r"aws_secret_access_key", r"AKIA[0-9A-Z]{16}",
                    r"BEGIN (RSA |OPENSSH |EC )?PRIVATE KEY", r"password\s*=", r"ssh_private_key\s*:"):
        assert not re.search(pattern, text, re.IGNORECASE), pattern


def test_only_ssh_is_open_to_the_world(prepared):
    rules = prepared["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
        cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        if any(c in WORLD for c in cidrs):
            assert (rule.get("FromPort"), rule.get("ToPort")) == (22, 22), rule


def test_dashboard_on_localhost(prepared):
    heads = [c for c in prepared["head_start_ray_commands"] if "ray start" in c]
    assert len(heads) == 1 and "--head" in heads[0]
    assert "--dashboard-host=127.0.0.1" in heads[0]
    for cmd in prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]:
        assert "0.0.0.0" not in cmd, cmd  # Ray's own default starts the dashboard on 0.0.0.0


def test_mlflow_server_not_on_all_interfaces(prepared):
    servers = [c for c in prepared["head_start_ray_commands"] if "mlflow server" in c]
    assert len(servers) == 1
    host = re.search(r"(?:--host|-h)[ =](\$\([^)]*\)|\S+)", servers[0])
    assert host, "mlflow server without --host"
    assert host.group(1) in ("127.0.0.1", PRIVATE_IP), host.group(1)
    assert "--artifacts-destination s3://YOUR-BUCKET/mlflow" in servers[0]
    assert "--backend-store-uri sqlite:///" in servers[0]


def test_jobs_see_the_tracking_server(prepared):
    exports = [c for c in prepared["head_setup_commands"] if "MLFLOW_TRACKING_URI" in c]
    assert exports and ":5000" in exports[0]
    assert "s3://YOUR-BUCKET/ray" in CLUSTER_YAML.read_text()  # storage_path, for the user to replace


def test_gpu_study_packs_four_trials_per_gpu_node(prepared):
    """The gpu-study preset's sweep on the head and every GPU node cluster.yaml can start: a
    quarter GPU and one CPU per trial, four trials per g5.xlarge (4 vCPUs, 1 GPU)."""
    from orchestrator.config import load_sweep_settings, resolve_config
    from orchestrator.sweep.plan import plan_trials
    from search_spaces.loader import load_space

    types = prepared["available_node_types"]
    gpu = next(t for t in types.values() if t["resources"].get("GPU", 0) > 0)
    nodes = [{"Alive": True, "Resources": types[prepared["head_node_type"]]["resources"]}]
    nodes += [{"Alive": True, "Resources": gpu["resources"]}] * gpu["max_workers"]
    plan = plan_trials(resolve_config("gpu-study"), load_space(load_sweep_settings("gpu-study").space), True, nodes)
    assert plan.resources == {"cpu": 1, "gpu": 0.25} and plan.concurrency == 4 * gpu["max_workers"]
