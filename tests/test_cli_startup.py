"""The command line starts without the heavy libraries: ``dcgan-lab --help``, every subcommand's
``--help`` and ``dcgan-lab ui`` import neither torch nor Ray nor MLflow (each costs seconds)."""
import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "ray", "mlflow")
HELPS = [[], ["train"], ["sample"], ["sweep"], ["evaluate"], ["report"], ["bench"], ["ui"], ["represent"], ["power"],
         ["pilot"],
         ["data", "preview"], ["data", "cache"],
         *(["latent", verb] for verb in ("walk", "sheet", "arithmetic", "turn", "forget", "neighbours", "represent"))]
PROBE = """
import json, sys
from orchestrator.cli import main
argv = json.loads(sys.argv[1])
try:
    code = main(argv)
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (HEAVY,)


def _probe(argv):
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r


def test_every_help_imports_no_torch_ray_or_mlflow():
    for args in HELPS:
        out, r = _probe([*args, "--help"])
        assert out["code"] == 0, (args, r.stderr[-500:])
        assert out["heavy"] == [], f"dcgan-lab {' '.join(args)} --help imported {out['heavy'][:5]}"


def test_ui_reads_its_server_without_importing_mlflow():
    """``dcgan-lab ui`` talks to the server over MLflow's REST API: pointed at a tracking server
    that is not there, it fails in one line, with nothing heavy imported on the way."""
    from orchestrator.sweep.mlflow_server import free_port

    out, r = _probe(["ui", "--mlflow-uri", f"http://127.0.0.1:{free_port()}", "--no-browser"])
    assert out["code"] == 2 and "cannot be reached" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert out["heavy"] == [], out
