"""``dcgan-lab ui``: the MLflow UI for this project's store on 127.0.0.1, opened on the last sweep.

It prints (and, on a desktop, opens) the last sweep's parent run, its trials ranked by final FD
with lr, beta1, bn_placement, the searched params, the FD and the data set as columns, their FD
curves side by side (charts filtered on ``fd_``; clear the filter for every metric) and its
report. MLflow 3.17 opens an experiment in its GenAI view unless the URL says
``workflowType=machine_learning``; the columns, the order and the filter are an MLflow shared
view (an experiment tag, as the UI's own "Share" writes), named in the URL.
"""
import json
import os
import sys
from urllib.parse import urlencode

from trainables.errors import UserError

TRAINING_VIEW = {"workflowType": "machine_learning"}
VIEW_TAG = "mlflow.sharedViewState."   # + key: MLflow's shared view of an experiment's runs page
TRIAL_COLUMNS = ("lr", "beta1", "bn_placement", "seed")
TRIAL_METRICS = ("fd_final", "fd_best")


def add_subparser(subparsers):
    p = subparsers.add_parser("ui", help="open the MLflow UI on 127.0.0.1 for the tracking store, on the last sweep")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--no-browser", action="store_true", help="print the URLs, open no browser")
    p.set_defaults(func=cmd_ui)


def cmd_ui(args):
    from orchestrator.tracking import tracking_uri

    uri = tracking_uri(args.mlflow_uri)
    if uri.startswith(("http://", "https://")):
        # A tracking server already serves the UI (open it through a port forward if remote).
        show(sweep_links(uri, uri.rstrip("/")), args.no_browser)
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"port={args.port} is not allowed: 1..65535")
    check_port_free(args.port)
    return serve(uri, args.port, args.no_browser)


def serve(uri, port, no_browser):
    """Run ``mlflow ui`` until Ctrl-C; print the links once it answers."""
    import subprocess

    from orchestrator.mlflow_server import _die_with_parent, wait_healthy

    base = f"http://127.0.0.1:{port}"
    links = (sweep_links(uri, base) if _store_exists(uri)
             else [("MLflow UI (no runs yet)", training_url(base, "experiments"))])
    print(f"MLflow UI for {uri} at {base} (Ctrl-C to stop)", flush=True)
    # No MLflow job runner: it serves GenAI jobs (scorers, issue detection) with a process pool
    # of its own, and this project starts none.
    proc = subprocess.Popen(ui_command(uri, port), env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            preexec_fn=_die_with_parent)
    try:
        wait_healthy(base, proc, 300, "the output above")
        show(links, no_browser)
        return proc.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def ui_command(uri, port):
    """The MLflow UI on loopback only: reach it from elsewhere through an SSH port forward. One
    worker: one reader, and a start in seconds rather than four processes importing MLflow."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]


def check_port_free(port):
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port={port} is not allowed: 127.0.0.1:{port} is in use (pick another with --port)") from None


def _store_exists(uri):
    from pathlib import Path

    return not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///"):]).is_file()


def show(links, no_browser):
    for label, url in links:
        print(f"{label}: {url}", flush=True)
    if not no_browser and _has_desktop():
        import webbrowser

        webbrowser.open(links[0][1])


def _has_desktop():
    """A browser window can open here (not a console browser taking over an SSH terminal)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def training_url(base, route, **query):
    return f"{base}/#/{route}?{urlencode({**TRAINING_VIEW, **query})}"


def sweep_links(uri, base):
    """(label, URL) of the last sweep's parent run, its trials and their curves; the experiments
    list when the store holds no sweep. Writes the trials' shared view to the experiment."""
    from orchestrator.run_notes import REPORT_HTML
    from trainables import store
    from trainables.run_note import SWEEP_TAG

    c = store.client(uri)
    parent = last_sweep(c)
    if parent is None:
        return [("MLflow UI (no sweep yet)", training_url(base, "experiments"))]
    exp, pid, name = parent.info.experiment_id, parent.info.run_id, parent.info.run_name
    trials = c.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{pid}'", max_results=10000)
    view = trials_view(pid, trials, SWEEP_TAG)
    key = f"sweep-{pid}"
    c.set_experiment_tag(exp, VIEW_TAG + key, json.dumps(view))
    c.set_experiment_tag(exp, VIEW_TAG + key + "-fd", json.dumps({**view, "chartsSearchFilter": "fd_"}))
    runs = f"experiments/{exp}/runs"
    return [(f"last sweep {name} (parent run)", training_url(base, f"{runs}/{pid}")),
            ("its trials ranked by final FD", training_url(base, runs, viewStateShareKey=key)),
            ("their FD curves", training_url(base, runs, viewStateShareKey=key + "-fd", compareRunsMode="CHART")),
            ("its report", training_url(base, f"{runs}/{pid}/artifacts/{REPORT_HTML}"))]


def last_sweep(c):
    """The most recently started sweep parent run in any experiment of the store."""
    exps = [e.experiment_id for e in c.search_experiments()]
    found = c.search_runs(exps, filter_string="tags.kind = 'sweep'", order_by=["attributes.start_time DESC"],
                          max_results=1) if exps else []
    return found[0] if found else None


def trials_view(parent_id, trials, sweep_tag):
    """MLflow's runs-page state: this sweep's runs, sorted by final FD (a sort on a metric also
    lists the trials beside the parent instead of folded under it), with the columns a
    researcher reads first: the paper's three factors, seed, whatever else the sweep varied."""
    varied = sorted({k for t in trials for k, v in t.data.params.items()
                     if len({u.data.params.get(k) for u in trials}) > 1} - set(TRIAL_COLUMNS))
    columns = (["attributes.`Dataset`"] + [f"params.`{k}`" for k in (*TRIAL_COLUMNS, *varied)]
               + [f"metrics.`{k}`" for k in TRIAL_METRICS] + ["tags.`status`"])
    return {"searchFilter": f"tags.{sweep_tag} = '{parent_id}'", "orderByKey": "metrics.`fd_final`",
            "orderByAsc": True, "selectedColumns": columns,
            "columnOrder": ["attributes.`Run Name`", *columns[1:], columns[0]]}   # the data set last: it is wide
