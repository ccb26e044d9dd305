"""``dcgan-lab ui``: the MLflow UI for this project's store on 127.0.0.1, opened on the last sweep.

It prints (and, on a desktop, opens) the last sweep's parent run, its trials ranked by final FD
with lr, beta1, bn_placement, the searched params, the FD and the data set as columns, their FD
curves side by side (charts filtered on ``fd_``; clear the filter for every metric), their
fixed-noise sample grids side by side with a step slider, and its report. MLflow (3.17 on) opens
an experiment in its GenAI view unless the URL says ``workflowType=machine_learning``; the columns,
the order, the filter and the sample-grid card are an MLflow shared view (an experiment tag, as
the UI's own "Share" writes), named in the URL.

The links are read from the server through MLflow's REST API (the local server once it answers,
or the tracking server a URI names): the command imports neither MLflow nor torch nor Ray.
"""
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlencode

from trainables.errors import UserError

TRAINING_VIEW = {"workflowType": "machine_learning"}
VIEW_TAG = "mlflow.sharedViewState."   # + key: MLflow's shared view of an experiment's runs page
TRIAL_COLUMNS = ("lr", "beta1", "bn_placement", "seed")
TRIAL_METRICS = ("fd_final", "fd_best")
SAMPLES_KEY = "samples"   # the image key of a run's fixed-noise grids (trainables.run_logger)


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
        show(sweep_links(uri.rstrip("/")), args.no_browser)
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"port={args.port} is not allowed: 1..65535")
    check_port_free(args.port)
    return serve(uri, args.port, args.no_browser)


def serve(uri, port, no_browser):
    """Run ``mlflow ui`` until Ctrl-C; print the links once it answers."""
    import subprocess

    from orchestrator.sweep.mlflow_server import NO_JOB_RUNNER, _die_with_parent, wait_healthy

    base = f"http://127.0.0.1:{port}"
    print(f"MLflow UI for {uri} at {base} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(ui_command(uri, port), env={**os.environ, **NO_JOB_RUNNER},
                            preexec_fn=_die_with_parent)
    try:
        wait_healthy(base, proc, 300, "the output above")
        show(sweep_links(base), no_browser)
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


def sweep_links(base):
    """(label, URL) of the last sweep's parent run, its trials and their curves; the experiments
    list when the store holds no sweep. Writes the trials' shared view to the experiment."""
    from orchestrator.run_notes import REPORT_HTML
    from trainables.run_note import SWEEP_TAG

    parent = last_sweep(base)
    if parent is None:
        return [("MLflow UI (no sweep yet)", training_url(base, "experiments"))]
    exp, pid, name = parent["info"]["experiment_id"], parent["info"]["run_id"], parent["info"]["run_name"]
    trials = search_runs(base, [exp], f"tags.mlflow.parentRunId = '{pid}'")
    view = trials_view(pid, [params(t) for t in trials], SWEEP_TAG)
    key = f"sweep-{pid}"
    views = ((key, view), (key + "-fd", {**view, "chartsSearchFilter": "fd_"}),
             (key + "-samples", {**view, **samples_view(trials)}))
    for tag, value in views:
        rest(base, "experiments/set-experiment-tag", experiment_id=exp, key=VIEW_TAG + tag, value=json.dumps(value))
    runs = f"experiments/{exp}/runs"
    return [(f"last sweep {name} (parent run)", training_url(base, f"{runs}/{pid}")),
            ("its trials ranked by final FD", training_url(base, runs, viewStateShareKey=key)),
            ("their FD curves", training_url(base, runs, viewStateShareKey=key + "-fd", compareRunsMode="CHART")),
            ("their sample grids", training_url(base, runs, viewStateShareKey=key + "-samples", compareRunsMode="CHART")),
            ("its report", training_url(base, f"{runs}/{pid}/artifacts/{REPORT_HTML}"))]


def samples_view(trials):
    """The runs page's charts: one image-grid card of the trials' fixed-noise grids side by side,
    opened at the last step logged, without MLflow's caption of every run param (since MLflow 3.18 a
    card shows each run's whole config above its image unless ``showRunParams`` is off, which puts the
    grid below the fold). The card as MLflow's own "Image grid" card serialises it."""
    last = max((int(tags(t).get("final_step", 0)) for t in trials), default=0)
    section = {"uuid": "dcgan-lab-samples", "name": "Fixed-noise sample grids", "display": True,
               "isReordered": False, "deleted": False, "isGenerated": False}
    card = {"uuid": "dcgan-lab-samples-grid", "type": "IMAGE", "runsCountToCompare": 10, "metricSectionId": section["uuid"],
            "deleted": False, "isGenerated": False, "displayName": SAMPLES_KEY, "imageKeys": [SAMPLES_KEY], "step": last,
            "showRunParams": False}
    return {"compareRunCharts": [card], "compareRunSections": [section], "isAccordionReordered": True,
            "chartsSearchFilter": SAMPLES_KEY}


def last_sweep(base):
    """The most recently started sweep parent run in any experiment of the store."""
    exps = [e["experiment_id"] for e in rest(base, "experiments/search", max_results=1000).get("experiments", [])]
    found = search_runs(base, exps, "tags.kind = 'sweep'", order_by=["attributes.start_time DESC"], limit=1) if exps else []
    return found[0] if found else None


def search_runs(base, experiment_ids, filter_string, order_by=(), limit=None):
    """Runs as MLflow's REST API returns them (``info``, ``data``), every page."""
    runs, token = [], None
    while limit is None or len(runs) < limit:
        page = rest(base, "runs/search", experiment_ids=list(experiment_ids), filter=filter_string,
                    order_by=list(order_by), max_results=min(limit or 1000, 1000),
                    **({"page_token": token} if token else {}))
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            break
    return runs[:limit]


def params(run):
    return {p["key"]: p["value"] for p in run.get("data", {}).get("params", [])}


def tags(run):
    return {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}


def rest(base, endpoint, **body):
    """POST to ``base``'s MLflow REST API (2.0); a server that refuses or fails is one line. A
    tracking server's credentials come from MLflow's own variables."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        pair = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as err:
        answer = err.read()[:200].decode(errors="replace")
        raise UserError(f"mlflow_uri={base!r}: {endpoint} answered {err.code}: {answer}") from None
    except OSError as err:
        raise UserError(f"mlflow_uri={base!r} cannot be reached: {err}") from None


def trials_view(parent_id, trial_params, sweep_tag):
    """MLflow's runs-page state: this sweep's runs, sorted by final FD (a sort on a metric also
    lists the trials beside the parent instead of folded under it), with the columns a
    researcher reads first: the paper's three factors, seed, whatever else the sweep varied."""
    varied = sorted({k for p in trial_params for k in p
                     if len({q.get(k) for q in trial_params}) > 1} - set(TRIAL_COLUMNS))
    columns = (["attributes.`Dataset`"] + [f"params.`{k}`" for k in (*TRIAL_COLUMNS, *varied)]
               + [f"metrics.`{k}`" for k in TRIAL_METRICS] + ["tags.`status`"])
    return {"searchFilter": f"tags.{sweep_tag} = '{parent_id}'", "orderByKey": "metrics.`fd_final`",
            "orderByAsc": True, "selectedColumns": columns,
            "columnOrder": ["attributes.`Run Name`", *columns[1:], columns[0]]}   # the data set last: it is wide
