"""Drop-in compatibility of ``hydra/sweeper=optuna`` with the stock hydra-optuna-sweeper (issue 14).

The apps in tests/apps (``sphere``, ``multi_objective``, ``custom_space``) are written as a
stock-plugin user would write them (search space and direction in the config, no ``optuna``
node); each sweep runs in a subprocess with the venv's Python and small ``n_trials``.
README.md ("Migrating from hydra-optuna-sweeper") lists the intended differences.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.mixerlab_optuna_sweeper import config as sweeper_config
from hydra_plugins.mixerlab_optuna_sweeper._job_overrides import (
    identity_overrides,
    trial_overrides,
)
from hydra_plugins.mixerlab_optuna_sweeper._sampler_check import check_sampler
from hydra_plugins.mixerlab_optuna_sweeper._search_space import build_search_space
from tracking.optuna_storage import open_storage, resolve_storage_url

REPO = Path(__file__).resolve().parents[1]
APPS = REPO / "tests" / "apps"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
# run an app with the `cmaes` package made unimportable, whether or not it is installed
WITHOUT_CMAES = ("import runpy, sys; sys.modules['cmaes'] = None; sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_app(app: str, sweep_dir: Path, *overrides: str, check: bool = True,
            without_cmaes: bool = False) -> subprocess.CompletedProcess:
    """``tests/apps/<app>.py -m hydra/sweeper=optuna`` into ``sweep_dir``."""
    prefix = [PYTHON, "-c", WITHOUT_CMAES] if without_cmaes else [PYTHON]
    cmd = [*prefix, str(APPS / f"{app}.py"), "-m", "hydra/sweeper=optuna",
           f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.sampler.seed=0", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def load(sweep_dir: Path, name: str) -> optuna.Study:
    storage = open_storage(resolve_storage_url(None, str(sweep_dir)))
    return optuna.load_study(study_name=name, storage=storage)


def results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def job_configs(sweep_dir: Path) -> dict[str, dict]:
    """Job dir (relative to the sweep dir) -> its composed config."""
    return {str(p.parent.parent.relative_to(sweep_dir)): yaml.safe_load(p.read_text())
            for p in sweep_dir.glob("**/.hydra/config.yaml")}


# --- the search space -------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "expected"), [
    ("p=choice(1,2,3)", CategoricalDistribution([1, 2, 3])),
    ("p=choice(true,false)", CategoricalDistribution([True, False])),
    ("p=choice(a,b)", CategoricalDistribution(["a", "b"])),
    ("p=a,b", CategoricalDistribution(["a", "b"])),
    ("p=shuffle(range(1,3))", CategoricalDistribution([1, 2])),  # Hydra's own range: 1, 2
    ("p=range(1,3)", IntDistribution(1, 3)),  # stop included, as in the stock plugin
    ("p=range(1,3,step=1)", IntDistribution(1, 3)),
    ("p=range(0,10,step=5)", IntDistribution(0, 10, step=5)),
    ("p=range(1,4,step=2)", IntDistribution(1, 3, step=2)),  # Optuna's high: low + k*step
    ("p=range(0.5,5.5,step=1)", FloatDistribution(0.5, 5.5, step=1.0)),
    ("p=range(-5.5,5.5,step=0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
    ("p=range(1,1)", IntDistribution(1, 1)),
    ("p=interval(1,2.5)", FloatDistribution(1.0, 2.5)),
    ("p=interval(1.0,5.0)", FloatDistribution(1.0, 5.0)),
    ("p=int(interval(1,5))", IntDistribution(1, 5)),
    ("p=tag(log,interval(1,10))", FloatDistribution(1.0, 10.0, log=True)),
    ("p=tag(log,int(interval(1,10)))", IntDistribution(1, 10, log=True)),
])
def test_override_maps_to_the_stock_distribution(override: str, expected: Any) -> None:
    actual = build_search_space([override]).distributions["p"]
    if isinstance(expected, CategoricalDistribution):  # shuffle() draws the order at random
        assert isinstance(actual, CategoricalDistribution)
        assert sorted(map(str, actual.choices)) == sorted(map(str, expected.choices))
        assert len(actual.choices) == len(expected.choices)
    else:
        assert actual == expected


def test_overrides_split_into_search_space_fixed_values_and_deletions() -> None:
    space = build_search_space(["x=range(1,3)", "y=choice(-5,0,5)", "y=0", "w=interval(0,1)",
                                "~z", "w=2", "v=tag(log,interval(1e-3,1))"])
    assert space.distributions == {"x": IntDistribution(1, 3),
                                   "v": FloatDistribution(1e-3, 1.0, log=True)}
    assert space.fixed == {"y": "0", "w": "2"}  # a later fixed value leaves the search space
    assert space.deletions == {"z": "~z"}  # a deletion is neither searched nor fixed
    identity = identity_overrides("journal:///d/j.log", "s", 7, exclude_keys=["seed"])
    lines = trial_overrides(space, {"x": 2, "v": 0.01}, {}, identity)
    assert lines[:5] == ["x=2", "v=0.01", "y=0", "w=2", "~z"]
    assert lines[5:8] == ["optuna.storage='journal:///d/j.log'", "optuna.study_name='s'",
                          "optuna.trial=7"]
    assert lines[8] == "hydra.job.config.override_dirname.exclude_keys=" \
        "[seed,optuna.storage,optuna.study_name,optuna.trial]"
    # a deletion removes an earlier search-space entry; a later value brings the key back
    assert build_search_space(["z=interval(0,1)", "~z"]).distributions == {}
    assert build_search_space(["~z", "z=3"]).fixed == {"z": "3"}


# --- sampler configs --------------------------------------------------------------------------

# the stock plugin's sampler config keys (hydra main, plugins/hydra_optuna_sweeper)
STOCK_KEYS = {
    "tpe": {"seed", "consider_prior", "prior_weight", "consider_magic_clip",
            "consider_endpoints", "n_startup_trials", "n_ei_candidates", "multivariate",
            "warn_independent_sampling", "constant_liar"},
    "random": {"seed"},
    "cmaes": {"seed", "x0", "sigma0", "independent_sampler", "warn_independent_sampling",
              "consider_pruned_trials", "restart_strategy", "inc_popsize", "use_separable_cma",
              "source_trials"},
    "nsgaii": {"seed", "population_size", "mutation_prob", "crossover_prob", "swapping_prob",
               "constraints_func"},
    "grid": {"search_space", "seed"},
    "qmc": {"qmc_type", "scramble", "seed", "independent_sampler", "warn_asynchronous_seeding",
            "warn_independent_sampling"},
    "gp": {"seed", "independent_sampler", "n_startup_trials", "deterministic_objective"},
}
SAMPLER_CONFIGS = {
    "tpe": sweeper_config.TPESamplerConfig, "random": sweeper_config.RandomSamplerConfig,
    "cmaes": sweeper_config.CmaEsSamplerConfig, "nsgaii": sweeper_config.NSGAIISamplerConfig,
    "grid": sweeper_config.GridSamplerConfig, "qmc": sweeper_config.QMCSamplerConfig,
    "gp": sweeper_config.GPSamplerConfig,
}


@pytest.mark.parametrize("name", sorted(SAMPLER_CONFIGS))
def test_sampler_config_matches_the_installed_optuna_signature(name: str) -> None:
    node = SAMPLER_CONFIGS[name]
    fields = {f.name: f.default for f in dataclasses.fields(node) if f.name != "_target_"}
    sampler_cls = getattr(optuna.samplers, node._target_.rsplit(".", 1)[1])
    signature = {k: (None if p.default is inspect.Parameter.empty else p.default)
                 for k, p in inspect.signature(sampler_cls.__init__).parameters.items()
                 if k != "self"}
    assert fields == signature
    assert STOCK_KEYS[name] <= set(fields)


def test_motpe_and_a_missing_optional_dependency_are_named(monkeypatch) -> None:
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match="MOTPESampler was removed in Optuna 4.*sampler=tpe"):
        check_sampler(OmegaConf.structured(sweeper_config.MOTPESamplerConfig))
    monkeypatch.setitem(sys.modules, "cmaes", None)  # find_spec then reports it missing
    with pytest.raises(ValueError, match="pip install cmaes") as err:
        check_sampler(OmegaConf.structured(sweeper_config.CmaEsSamplerConfig))
    assert "\n" not in str(err.value)
    check_sampler(OmegaConf.structured(sweeper_config.TPESamplerConfig))  # no error


# --- the example apps, end to end -------------------------------------------------------------

def test_sphere_best_params_are_the_searched_params_and_deletion_applies(tmp_path) -> None:
    out = tmp_path / "sphere"
    proc = run_app("sphere", out, "y=0", "~z", "hydra.sweep.subdir=${hydra.job.override_dirname}")
    assert "study has 0 trials, n_trials 4, launching 4" in proc.stdout + proc.stderr
    study = load(out, "sphere")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.trials[0].distributions == {"x": FloatDistribution(-5.5, 5.5, step=1.0)}
    best = results(out)
    assert best["name"] == "optuna"
    assert best["best_params"] == study.best_params == {"x": study.best_params["x"]}
    assert best["best_value"] == study.best_value
    configs = job_configs(out)
    assert configs and all("z" not in cfg and cfg["y"] == 0 for cfg in configs.values())
    # job dirs named after override_dirname: flat, without the trial's identity
    for name in configs:
        assert "/" not in name and "optuna" not in name and name.startswith("x=")
        assert name.endswith(",y=0,~z")
        # a stock-style app (no `optuna` node) gets the stock overrides and nothing added
        assert "optuna" not in configs[name]
        overrides = yaml.safe_load((out / name / ".hydra" / "overrides.yaml").read_text())
        assert overrides == [f"x={configs[name]['x']}", "y=0", "~z"]


def test_resume_reports_the_study_total(tmp_path) -> None:
    out = tmp_path / "resume"
    run_app("sphere", out, "hydra.sweeper.n_trials=2")
    proc = run_app("sphere", out, "hydra.sweeper.n_trials=3")
    assert "study has 2 trials, n_trials 3, launching 1" in proc.stdout + proc.stderr
    assert len(load(out, "sphere").trials) == 3


def test_multi_objective_results_hold_the_stock_solutions(tmp_path) -> None:
    out = tmp_path / "multi"
    run_app("multi_objective", out)
    study = load(out, "multi_objective")
    solutions = results(out)["solutions"]
    assert sorted((s["params"]["x"], s["params"]["y"]) for s in solutions) == \
        sorted((t.params["x"], t.params["y"]) for t in study.best_trials)
    for s in solutions:
        assert set(s) == {"params", "values"} and len(s["values"]) == 2
        dominated = [o for o in solutions if o is not s and all(
            a <= b for a, b in zip(o["values"], s["values"], strict=True))
            and o["values"] != s["values"]]
        assert not dominated  # the Pareto front: no solution dominates another
    assert results(out)["name"] == "optuna"


def test_custom_search_space_adds_and_constrains_params(tmp_path) -> None:
    out = tmp_path / "custom"
    run_app("custom_space", out)
    study = load(out, "custom_space")
    for trial in study.trials:
        assert set(trial.params) == {"x", "y", "z", "+w"}
        assert abs(trial.params["z"] - trial.params["x"]) <= 0.5
    assert results(out)["best_params"] == study.best_params
    configs = job_configs(out).values()
    assert all(0.0 <= cfg["w"] <= 1.0 for cfg in configs)  # +w added the key


def test_a_driver_error_fails_the_batch_and_leaves_no_waiting_trial(tmp_path) -> None:
    out = tmp_path / "broken"
    proc = run_app("custom_space", out, "fail_space_from=2", check=False)
    assert proc.returncode != 0 and "custom search space broken at trial 2" in proc.stderr
    states = [t.state for t in load(out, "custom_space").trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2


def test_cmaes_without_its_package_fails_before_any_trial(tmp_path) -> None:
    out = tmp_path / "cmaes"
    proc = run_app("sphere", out, "hydra/sweeper/sampler=cmaes", check=False,
                   without_cmaes=True)
    assert proc.returncode != 0 and "pip install cmaes" in proc.stderr
    assert not (out / "optuna_journal.log").exists()  # no study, so no WAITING trial
    assert not out.exists() or not job_configs(out)  # no job ran


def test_motpe_names_its_replacement(tmp_path) -> None:
    proc = run_app("sphere", tmp_path / "motpe", "hydra/sweeper/sampler=motpe", check=False)
    assert proc.returncode != 0
    assert "MOTPESampler was removed in Optuna 4" in proc.stderr and "sampler=tpe" in proc.stderr


def test_every_trial_failing_exits_non_zero_with_the_first_error(tmp_path) -> None:
    out = tmp_path / "fail"
    proc = run_app("sphere", out, "error=true", "hydra.sweeper.max_failure_rate=1.0",
                   check=False)
    assert proc.returncode != 0
    first = load(out, "sphere").trials[0]
    assert "all 4 trials failed" in proc.stderr
    assert f"sphere failed on purpose at x={first.params['x']}" in proc.stderr
    assert results(out)["best_value"] is None
