"""Search spaces: the shipped files load, convert to Tune and Optuna, enumerate, and bad files fail on one line."""
from dataclasses import fields

import pytest

from search_spaces.loader import grid_points, load_space, paper_defaults, space_names, to_optuna, to_tune
from trainables.config import Config
from trainables.errors import UserError


def test_shipped_spaces_load():
    assert {"lr-beta1-bn", "paper-claims"} <= set(space_names())
    for name in space_names():
        space = load_space(name)
        assert space.name == name and space.description and space.params


def test_lr_beta1_bn_to_tune():
    from ray.tune.search.sample import Categorical, Float, LogUniform, Uniform

    tune_space = to_tune(load_space("lr-beta1-bn"))
    lr, beta1, bn = tune_space["lr"], tune_space["beta1"], tune_space["bn_placement"]
    assert isinstance(lr, Float) and isinstance(lr.get_sampler(), LogUniform)
    assert (lr.lower, lr.upper) == (1e-5, 1e-2)
    assert isinstance(beta1, Float) and isinstance(beta1.get_sampler(), Uniform)
    assert (beta1.lower, beta1.upper) == (0.0, 0.95)
    assert isinstance(bn, Categorical) and bn.categories == ["paper", "all", "none"]


def test_lr_beta1_bn_to_optuna():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = to_optuna(load_space("lr-beta1-bn"))
    assert dists["lr"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert dists["beta1"] == FloatDistribution(0.0, 0.95)
    assert dists["bn_placement"] == CategoricalDistribution(["paper", "all", "none"])


def test_paper_claims_is_the_factorial():
    space = load_space("paper-claims")
    assert to_tune(space) == {"lr": {"grid_search": [2e-4, 1e-3]}, "beta1": {"grid_search": [0.5, 0.9]},
                              "bn_placement": {"grid_search": ["paper", "all"]}}
    points = grid_points(space, seeds=3)
    assert len(points) == 24
    assert len({tuple(sorted(p.items())) for p in points}) == 24
    assert {p["seed"] for p in points} == {0, 1, 2}
    assert points[0] == {"lr": 2e-4, "beta1": 0.5, "bn_placement": "paper", "seed": 0}
    assert all(isinstance(p["lr"], float) for p in points)
    block = grid_points(space, seeds=2, first_seed=3)   # a study's next block of seeds
    assert [p["seed"] for p in block] == [3] * 8 + [4] * 8
    assert [{k: v for k, v in p.items() if k != "seed"} for p in block[:8]] == \
           [{k: v for k, v in p.items() if k != "seed"} for p in points[:8]]
    with pytest.raises(UserError, match="first_seed=-1"):
        grid_points(space, seeds=2, first_seed=-1)


def test_architecture_is_one_factor_at_a_time():
    space = load_space("architecture")
    points = grid_points(space, seeds=2)
    paper = {"d_downsample": "strided", "g_upsample": "transposed", "d_head": "conv",
             "d_activation": "leaky_relu", "g_activation": "relu"}
    assert len(points) == 14 and points[0] == {**paper, "seed": 0} and points[7] == {**paper, "seed": 1}
    # Every other point differs from the paper's net in exactly one key, and every value is run.
    for p in points[1:7]:
        assert sum(p[k] != v for k, v in paper.items()) == 1
    assert {(k, p[k]) for p in points for k in paper} == {(k, v) for k in paper for v in space.params[k].values}


def test_paper_defaults_are_the_configs():
    cfg = Config()
    for name in ("lr-beta1-bn", "paper-claims"):
        assert paper_defaults(load_space(name)) == {"lr": cfg.lr, "beta1": cfg.beta1,
                                                    "bn_placement": cfg.bn_placement}


def test_int_range_is_inclusive_in_both(tmp_path):
    space = load_space(write(tmp_path, "ngf: {dist: int, low: 16, high: 64}"))
    assert to_optuna(space)["ngf"].high == 64
    assert to_tune(space)["ngf"].upper == 65  # Tune's randint excludes its upper bound


def test_wrong_use_of_a_space_names_the_params(tmp_path):
    with pytest.raises(UserError, match=r"lr \(dist=loguniform\), beta1 \(dist=uniform\)"):
        grid_points(load_space("lr-beta1-bn"), seeds=2)
    with pytest.raises(UserError, match="lr, beta1, bn_placement are dist=grid"):
        to_optuna(load_space("paper-claims"))
    with pytest.raises(UserError, match="seeds=0"):
        grid_points(load_space("paper-claims"), seeds=0)
    with pytest.raises(UserError, match="params.lr_g does not contain the paper's default lr_g=None"):
        paper_defaults(load_space(write(tmp_path, "lr_g: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}")))


def test_unknown_name_lists_the_registry():
    with pytest.raises(UserError) as err:
        load_space("nope")
    assert f"search space='nope' is not allowed: one of {', '.join(space_names())}" in str(err.value)


BAD_PARAMS = [
    ("colour: {dist: choice, values: [red]}", "colour", "unknown config key"),
    ("lr: {dist: gaussian, low: 0.1, high: 0.2}", "lr", "dist='gaussian' is not allowed"),
    ("lr: {dist: uniform, low: 1.0e-2, high: 1.0e-3}", "lr", "must be < high"),
    ("beta1: {dist: uniform, low: 0.5, high: 0.5}", "beta1", "must be < high"),
    ("beta1: {dist: loguniform, low: 0.0, high: 0.9}", "beta1", "must be > 0 for dist=loguniform"),
    ("bn_placement: {dist: choice, values: [paper, sometimes]}", "bn_placement",
     "bn_placement='sometimes' is not allowed"),
    ("lr: {dist: grid, values: [2.0e-4, -1]}", "lr", "lr=-1.0 is not allowed: > 0"),
    ("beta1: {dist: uniform, low: 0.0, high: 1.0}", "beta1", "beta1=1.0 is not allowed"),
    ("lr: {dist: uniform, low: abc, high: 0.1}", "lr", "lr='abc' is not allowed"),
    ("ngf: {dist: uniform, low: 16, high: 64}", "ngf", "dist=uniform draws floats but ngf takes int"),
    ("lr: {dist: int, low: 1, high: 2}", "lr", "dist=int draws ints but lr takes float"),
    ("image_size: {dist: int, low: 32, high: 128}", "image_size", "outside image_size's choices"),
    ("lr: {dist: loguniform, low: 1.0e-4}", "lr", "'high' is missing"),
    ("lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3, log: true}", "lr", "'log' does not go with"),
    ("lr: {dist: choice, values: []}", "lr", "a non-empty list"),
    ("bn_placement: {dist: grid, values: [paper, paper]}", "bn_placement", "no repeats"),
    ("lr: 2.0e-4", "lr", "must be a mapping with 'dist'"),
]


@pytest.mark.parametrize("body, key, problem", BAD_PARAMS)
def test_bad_param_names_file_key_and_problem(tmp_path, body, key, problem):
    path = write(tmp_path, body)
    with pytest.raises(UserError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and f"params.{key}:" in message and problem in message
    assert "\n" not in message


@pytest.mark.parametrize("text, problem", [
    ("params:\n  lr: {dist: uniform, low: 0.1\n", "not valid YAML: line 3, column 1: expected ',' or '}'"),
    ("", "must be a mapping with 'params' (got an empty file)"),
    ("- lr\n- beta1\n", "must be a mapping with 'params' (got a list)"),
    ("description: no params\n", "params: must be a non-empty mapping"),
    ("params: {}\n", "params: must be a non-empty mapping"),
    ("prams:\n  lr: {dist: uniform, low: 0.1, high: 0.2}\n", "unknown top-level key 'prams'"),
    ("params:\n  lr: {dist: uniform, low: 0.1, high: 0.2}\nseeds: 3\n", "unknown top-level key 'seeds'"),
    ("design: latin\nparams:\n  lr: {dist: grid, values: [0.1]}\n", "design='latin': allowed: factorial, one_at_a_time"),
    ("design: one_at_a_time\nparams:\n  lr: {dist: grid, values: [0.1, 0.2]}\n",
     "params.lr does not contain the paper's default lr=0.0002"),
])
def test_bad_file_names_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_optuna_search_starts_from_the_paper(tmp_path):
    """A real OptunaSearch on the lr-beta1-bn space, resumable from SQLite, tries the paper's values first."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("lr-beta1-bn")
    storage = optuna.storages.RDBStorage("sqlite:///" + str(tmp_path / "optuna.db"))
    searcher = OptunaSearch(space=to_optuna(space), metric="fid", mode="min", seed=0,
                            points_to_evaluate=[paper_defaults(space)],
                            storage=storage, study_name="lr-beta1-bn")
    assert searcher.suggest("t0") == {"lr": 2e-4, "beta1": 0.5, "bn_placement": "paper"}
    searcher.on_trial_complete("t0", {"fid": 30.0})
    second = searcher.suggest("t1")
    assert 1e-5 <= second["lr"] <= 1e-2 and 0.0 <= second["beta1"] <= 0.95
    assert second["bn_placement"] in ("paper", "all", "none")

    reloaded = optuna.load_study(study_name="lr-beta1-bn", storage=storage)
    assert reloaded.trials[0].params == paper_defaults(space) and reloaded.trials[0].value == 30.0


def write(tmp_path, param_line):
    path = tmp_path / "space.yaml"
    path.write_text(f"description: test\nparams:\n  {param_line}\n")
    return path


def test_claims_take_the_paper_levels_from_the_config_defaults():
    """One home for the paper's values: the config's defaults. The claims file does not repeat them
    (no ``paper:`` field), so each claim's paper level is the default of its factor."""
    import yaml

    from search_spaces.claims import CLAIMS_DIR, load_claims

    spec = yaml.safe_load((CLAIMS_DIR / "paper.yaml").read_text())["claims"]
    assert not [key for key, claim in spec.items() if "paper" in claim]
    defaults = {f.name: f.default for f in fields(Config)}
    assert {c.factor: c.paper for c in load_claims("paper")} == {c.factor: defaults[c.factor] for c in load_claims("paper")}
    assert defaults["lr"] == 2e-4 and defaults["beta1"] == 0.5 and defaults["bn_placement"] == "paper"
