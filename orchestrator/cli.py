"""The ``dcgan-lab`` command: one subcommand per user verb, each defined in its own module (``<verb>_cmd.py``
where the work lives in a package: ``report/``, ``sweep/``, ``bench/``, ``latent/``, ``features_svm/``)."""
import argparse
import importlib
import sys

from trainables.errors import UserError

# Modules that each define ``add_subparser(subparsers)``; order is the help's order.
COMMAND_MODULES = [
    "orchestrator.train",       # train, sample
    "orchestrator.sweep_cmd",   # sweep
    "orchestrator.search_cmd",  # search-study
    "orchestrator.evaluate",    # evaluate
    "orchestrator.latent_cmd",  # latent walk|sheet|arithmetic|turn|forget|neighbours|represent, represent
    "orchestrator.report_cmd",  # report
    "orchestrator.power_cmd",   # power
    "orchestrator.pilot_cmd",   # pilot
    "orchestrator.features_svm_cmd",   # features-svm
    "orchestrator.replay_cmd",  # replay
    "orchestrator.data_cmd",    # data preview|cache
    "orchestrator.evaluator_cmd",   # evaluator train|list
    "orchestrator.bench_cmd",   # bench
    "orchestrator.ui",          # ui
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's own errors: one line, exit code 2, like every other bad input.
        raise UserError(message)


def build_parser():
    parser = _Parser(prog="dcgan-lab", description="Reproduce and measure the DCGAN paper's claims.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_subparser(subparsers)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except UserError as err:
        print(f"dcgan-lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dcgan-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
