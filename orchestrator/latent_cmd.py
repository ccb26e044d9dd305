"""``dcgan-lab latent walk|sheet|arithmetic|turn|forget|neighbours|represent`` (``represent`` also as
``dcgan-lab represent``): the paper's latent-space (section 6) and representation (5.1) experiments on
any tracked run. Each command is declared once here (name, help, arguments); what it runs is in
``orchestrator/latent/experiments.py``, the math in ``trainables/latent/``.
"""
import argparse
from dataclasses import dataclass
from typing import Callable

from orchestrator.latent.experiments import (
    arithmetic,
    check_arithmetic,
    check_forget,
    check_turn,
    cmd_latent,
    cmd_represent,
    forget,
    neighbours,
    recipes,
    sheet,
    turn,
    walk,
)


def _count(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a whole number >= 1")
    return value


def _common(p):
    p.add_argument("--generators", "--run", dest="generators", default="", metavar="RUN_ID[,RUN_ID...]",
                   help="MLflow run id(s) of the generators (--run: the same, for one)")
    p.add_argument("--sweep", default="", metavar="PARENT_ID", help="every finished run of this sweep")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--out", default="", help="output folder (default: ./latent/<run_id>/<experiment>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def add_subparser(subparsers):
    p = subparsers.add_parser("latent", help="the paper's latent-space experiments on a tracked generator, "
                                             "and D's features (represent)")
    sub = p.add_subparsers(dest="experiment", required=True)
    for command in COMMANDS:
        _declare(sub, command)
    # The former spelling, `dcgan-lab represent`, stays.
    _declare(subparsers, COMMANDS_BY_NAME["represent"], help_suffix=" (the same as `dcgan-lab latent represent`)")


def _declare(subparsers, command, help_suffix=""):
    s = subparsers.add_parser(command.name, help=command.help + help_suffix)
    for flags, kwargs in command.arguments:
        s.add_argument(*flags, **kwargs)
    _common(s)
    s.set_defaults(func=command.main, experiment=command.name, latent_command=command)


# ---------------------------------------------------------------------------------------------
# The commands, each declared once: name, help, arguments, check (before any generator runs) and
# run (per generator; ``main`` is the whole command).
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatentCommand:
    name: str
    help: str
    arguments: tuple          # ((flags, ...), add_argument's keywords) each
    run: Callable = None      # (args, netG, cfg, uri, run_id) -> report, per generator
    check: Callable = None    # (args, cfg, run_id): a UserError before anything runs
    main: Callable = cmd_latent


def arg(*flags, **kwargs):
    return flags, kwargs


COMMANDS = (
    LatentCommand("walk", "interpolations between random z, and how evenly the images change", (
        arg("--points", type=_count, default=9, help="random z; a path between each consecutive pair"),
        arg("--steps", type=_count, default=8, help="steps per path"),
    ), run=walk),
    LatentCommand("sheet", "a numbered contact sheet, with its z stored (z.npy)", (
        arg("--n", type=_count, default=64, help="samples"),
    ), run=sheet),
    LatentCommand("arithmetic", "Y = mean(z_A) - mean(z_B) + mean(z_C), against pixel space", (
        arg("--recipe", choices=sorted(recipes()), help="one of the paper's analogies (sets --a/--b/--c/--target)"),
        *(arg(f"--{name}", help='sheet indices ("3,17,40") or an attribute query ("smiling & ~long_hair")')
          for name in ("a", "b", "c")),
        arg("--target", help="query the outputs should match (default: derived from the three queries)"),
        arg("--exemplars", type=_count, default=3, help="exemplars averaged per concept"),
        arg("--trials", type=_count, default=20, help="draws of exemplars, the unit of replication (queries only)"),
        arg("--budget", type=_count, default=4096, help="samples searched for exemplars"),
        arg("--sheet", default="", help="z.npy of the sheet that indices refer to (default: the run's latest "
                                        "`latent sheet`)"),
    ), run=arithmetic, check=check_arithmetic),
    LatentCommand("turn", "the turn vector from evaluator yaw, and the yaw along it", (
        arg("--exemplars", type=_count, default=4, help="faces looking left, and looking right, averaged"),
        arg("--rows", type=_count, default=8, help="random faces turned"),
        arg("--steps", type=_count, default=9, help="images per row"),
        arg("--pool", type=_count, default=512, help="samples the exemplars are chosen from"),
        arg("--draws", type=_count, default=10, help="independent exemplar draws, the unit of replication"),
    ), run=turn, check=check_turn),
    LatentCommand("forget", "drop G's window feature maps (a synthetic-bedrooms generator)", (
        arg("--n", type=_count, default=150, help="samples the classifier is fitted on (the paper's 150)"),
        arg("--heldout-n", type=_count, default=150, help="other samples every outcome is measured on"),
        arg("--layer", type=_count, default=1, help="G's hidden layer, counted from the output: 1 = the last "
                                                    "(input of the output layer), 2 = the one before, ..."),
    ), run=forget, check=check_forget),
    LatentCommand("neighbours", "nearest training images of generated samples (memorisation)", (
        arg("--n", type=_count, default=1000, help="generated samples"),
        arg("--train-n", type=_count, default=None, help="training images searched (default: all the run's)"),
        arg("--heldout-n", type=_count, default=1000, help="held-out real images (the reference)"),
    ), run=neighbours),
    LatentCommand("represent", "D's features + a linear SVM (paper 5.1), against baselines", (
        arg("--dataset", default="", help="labelled data set (default: the run's; another one of the same image "
                                          "size is a transfer setting)"),
        arg("--labels", default="", help="comma-separated class labels (default: every one)"),
        arg("--per-class", type=_count, default=100, help="labelled training examples per class and draw"),
        arg("--draws", type=_count, default=10, help="random draws of the labelled examples (the unit)"),
        arg("--pool", type=_count, default=4000, help="training images the draws come from"),
        arg("--test-n", type=_count, default=2000, help="test images"),
        arg("--data-root", default="", help="where real data sets live (default: the run's data_root)"),
    ), main=cmd_represent),
)


COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}
