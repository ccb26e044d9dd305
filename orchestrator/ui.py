"""``dcgan-lab ui``: the MLflow UI for this project's store, bound to 127.0.0.1."""
import os
import sys

from orchestrator.errors import UserError


def add_subparser(subparsers):
    p = subparsers.add_parser("ui", help="open the MLflow UI on 127.0.0.1 for the tracking store")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_ui)


def cmd_ui(args):
    from orchestrator.tracking import tracking_uri

    uri = tracking_uri(args.mlflow_uri)
    if uri.startswith(("http://", "https://")):
        print(f"this store is a tracking server: open {uri} in a browser (through a port forward if remote)")
        return 0
    if not 0 < args.port < 65536:
        raise UserError(f"port={args.port} is not allowed: 1..65535")
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, ui_command(uri, args.port))


def ui_command(uri, port):
    """The MLflow UI on loopback only: reach it from elsewhere through an SSH port forward."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port)]
