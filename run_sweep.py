"""Entry point for ``ray submit cluster.yaml run_sweep.py -- --preset paper-faces``: same as ``dcgan-lab sweep``."""
import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
