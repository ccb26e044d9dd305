"""A search study's settings (a preset's ``search_study:`` section, then the command's flags), their
checks before anything starts, and the study's folder (``./search_studies/<preset>-<n>/study.json``)."""
import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from search_spaces.metrics import METRICS
from trainables.atomic import write_atomic
from trainables.config import coerce_field, setting
from trainables.errors import UserError, bad_value

SAMPLERS = ("tpe", "random")   # Optuna's TPESampler and RandomSampler, both seeded with the search seed
OBJECTIVE = "fd"               # what Tune's trials report and Optuna minimises: the run's latest FD


@dataclass(frozen=True)
class StudySettings:
    space: str = setting("lr-beta1-bn", "search space name (search_spaces/NAME.yaml) or a YAML path")
    budget: int = setting(48, "stage-1 trials of the main search (the paper's point first)", min=1)
    sampler: str = setting("tpe", "the main search's Optuna sampler", choices=SAMPLERS)
    search_seed: int = setting(0, "the main search's sampler seed (the budget curve's searches: the next ones)", min=0)
    startup_trials: int = setting(10, "TPE's random start-up trials (TPESampler n_startup_trials)", min=1)
    stage1_steps: int = setting(0, "stage-1 horizon in steps (0: the config's max_steps)", min=0)
    top_k: int = setting(3, "stage-1 best configurations re-run in stage 2", min=3)
    fresh_seeds: int = setting(5, "stage-2 seeds per configuration, none used in stage 1", min=3)
    curve_searches: int = setting(3, "searches per sampler for the expected-best curve (0: none)", min=0)
    curve_budget: int = setting(0, "trials of each budget-curve search (0: the budget)", min=0)
    objectives: str = setting(OBJECTIVE, "what the search minimises, comma-separated: fd (the run's FD) first, then "
                                         "run metrics logged at its end (e.g. fd,loss_oscillation: Optuna's "
                                         "multi-objective search)")
    resamples: int = setting(200, "bootstrap resamples of the analysis's intervals (importance, budget curve)", min=0)

    def to_dict(self):
        return dataclasses.asdict(self)


STUDY_FIELDS = {f.name: f for f in fields(StudySettings)}
# What a multi-objective search may minimise beside FD: the metrics a run logs once, at its end, that are
# quantities (not 0/1 flags); steps_to_fd is the report's, not the run's.
RUN_OBJECTIVES = tuple(k for k, m in METRICS.items() if m.kind != "binary" and k != "steps_to_fd")


def flag(key):
    return "--" + key.replace("_", "-")


def load_study_settings(preset_section, flags):
    """StudySettings from a preset's ``search_study:`` mapping, then ``flags`` (None: not given), each
    value checked and named where it came from; then the rules between them."""
    section = preset_section or {}
    unknown = sorted(set(section) - set(STUDY_FIELDS))
    if unknown:
        raise bad_value(f"search_study.{unknown[0]}", section[unknown[0]],
                        f"unknown setting; known: {', '.join(STUDY_FIELDS)}")
    values = {k: coerce_field(STUDY_FIELDS[k], v, f"search_study.{k}") for k, v in section.items()}
    for key, value in flags.items():
        if value is not None:
            values[key] = coerce_field(STUDY_FIELDS[key], value, flag(key))
    settings = StudySettings(**values)
    check(settings)
    return settings


def check(s):
    """The rules between settings: each failure names the flag."""
    if s.top_k > s.budget - 1:
        raise bad_value(flag("top_k"), s.top_k, f"<= {s.budget - 1}: fewer than the {s.budget} stage-1 trials "
                                                f"({flag('budget')}), whose best k stage 2 re-runs")
    for key, budget in (("budget", s.budget), ("curve_budget", s.curve_budget or s.budget)):
        if "tpe" in searched_samplers(s) and budget < s.startup_trials:
            raise bad_value(flag(key), budget, f">= {s.startup_trials}, the TPE sampler's start-up trials "
                                               f"({flag('startup_trials')}): a smaller budget is random search")
    names = objective_names(s)
    known = (OBJECTIVE, *RUN_OBJECTIVES)
    for name in names:
        if name not in known:
            raise bad_value(flag("objectives"), s.objectives, f"{OBJECTIVE} first, then any of {', '.join(RUN_OBJECTIVES)} "
                                                              f"(metrics each run logs at its end); no run logs {name!r}")
    if names[0] != OBJECTIVE or len(set(names)) != len(names):
        raise bad_value(flag("objectives"), s.objectives, f"{OBJECTIVE} first (stage 2 ranks by it), each name once")


def objective_names(s):
    return [name.strip() for name in s.objectives.split(",")]


def searched_samplers(s):
    return {s.sampler} | (set(SAMPLERS) if s.curve_searches else set())


STAGE2 = "s2"


def main_search(s):
    return f"s1-{s.sampler}-{s.search_seed}"


def experiments(s):
    """The study's experiments in the order they run: (tag, sampler, search seed, trials)."""
    out = [(main_search(s), s.sampler, s.search_seed, s.budget), (STAGE2, s.sampler, s.search_seed, None)]
    for sampler in SAMPLERS:
        for seed in range(s.search_seed, s.search_seed + s.curve_searches):
            tag = f"s1-{sampler}-{seed}"
            if tag != out[0][0]:
                out.append((tag, sampler, seed, s.curve_budget or s.budget))
    return out


STUDIES_DIR = "search_studies"   # each study's state: study.json, its Optuna studies, the MLflow server log
STUDY_FILE = "study.json"


def study_dir(preset, resume_id=None):
    """``./search_studies/<preset>-<n>``: a new n per study; with ``resume_id``, that study's folder."""
    root = Path(STUDIES_DIR).absolute()
    if resume_id:
        d = root / resume_id
        if not (d / STUDY_FILE).is_file():
            known = sorted(p.parent.name for p in root.glob(f"*/{STUDY_FILE}"))
            raise bad_value("--resume", resume_id, f"a study under {root}: {', '.join(known) or 'there is none'}")
        return d
    taken = [int(p.parent.name.rsplit("-", 1)[1]) for p in root.glob(f"{preset}-*/{STUDY_FILE}")
             if p.parent.name.rsplit("-", 1)[1].isdigit()]
    return root / f"{preset}-{max(taken, default=0) + 1}"


def read_study(d):
    return json.loads((Path(d) / STUDY_FILE).read_text())


def write_study(d, data):
    Path(d).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(d) / STUDY_FILE, json.dumps(data, indent=2))


def update_study(d, **changes):
    data = read_study(d)
    data.update(changes)
    write_study(d, data)
    return data


def settings_from(data):
    """The settings a study was started with (``--resume`` takes them from study.json, not the flags)."""
    try:
        return StudySettings(**data["settings"])
    except TypeError as err:
        raise UserError(f"--resume: {STUDY_FILE} holds settings this version does not know ({err})") from None
