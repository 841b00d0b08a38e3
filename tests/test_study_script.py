"""scripts/study.py builds every variant it lists into a valid study and writes its tables; the
runs themselves take minutes each and are not part of the suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tiny import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("study")


def test_every_variant_builds_a_valid_study_on_every_tuning_set(study):
    from metaal.run import EMBEDDED_TARGETS, SPLIT_TARGETS

    sets = [study.TUNING_TARGETS, study.SECOND_TUNING_TARGETS, study.MANY_CLASS_TUNING_TARGETS,
            study.SPIKY_TUNING_TARGETS, study.REAL_TUNING_TARGETS]
    assert sum(map(len, sets)) == len(set().union(*sets))  # disjoint
    assert not (set(EMBEDDED_TARGETS) | set(SPLIT_TARGETS)) & set().union(*sets)
    assert not set(study.R_SOURCES) & set(study.REAL_TUNING_TARGETS)
    assert [t for _, (t, _) in study.EXTRA_SETS.items()] == sets[1:]
    for name, change in study.variants().items():
        for targets in sets:
            built = study.build(name, change, None, 3, targets)
            built.check()
            built.generate.validate()
            built.distill.validate()
            assert built.evaluate.tasks == list(targets) and built.targets == list(targets), name


def test_distill_seed_rows_differ_only_in_the_distillation_seed(study):
    rows = study.variants()
    base = rows["margin-pool-5-no-count-context"]
    assert base["distill"]["drop_features"] == ["log_classes", "log_labelled"]
    for seed in (1, 2):
        other = rows[f"margin-pool-5-no-count-context-distill-seed-{seed}"]
        assert other["distill"].pop("seed") == seed
        assert other == base
    assert "seed" not in base["distill"]  # the copies did not write into the base row
    initial = study.build("i3", rows["margin-pool-5-no-count-context-initial-3"], None, 3)
    assert initial.generate.loop.initial == 3 and initial.generate.loop.budget == 60


def test_baselines_are_reused_for_both_sets_but_never_a_policy_run(study, tmp_path):
    source = tmp_path / "earlier"
    for results in ("results", "results-second"):
        for f in ("margin__seed0.json", "policy__seed0.json"):
            p = source / "variant" / results / "runs" / "synthetic_seed=9001" / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{results}/{f}")
    out = tmp_path / "now"
    assert study.reuse_baselines(source, out) == 2
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert copied == ["results-second/runs/synthetic_seed=9001/margin__seed0.json",
                      "results/runs/synthetic_seed=9001/margin__seed0.json"]
    assert (out / copied[0]).read_text() == "results-second/margin__seed0.json"


def test_markdown_has_the_second_table_only_for_rows_that_have_it(study, tmp_path):
    row = {"variant": "a", "policy": 0.64, "random": 0.62, "best_heuristic": "margin 0.6377", "policy_minus_best": 0.0023,
           "mean_rank": 2.5, "beats_random": "3/4", "val_agreement": 0.2, "val_regret": None}
    second = {"policy": 0.75, "random": 0.73, "best_heuristic": "entropy 0.7590", "policy_minus_best": -0.009,
              "mean_rank": 4.0, "beats_random": "4/4"}
    path = tmp_path / "results.md"
    study.write_markdown([row], path, 3)
    assert "| a | 3 | 0.6400 | 0.6200 | margin 0.6377 | +0.0023 | 2.50 | 3/4 | 0.200 | – |" in path.read_text()
    assert "Second tuning set" not in path.read_text()
    study.write_markdown([row, {**row, "variant": "b", "second": second}], path, 3)
    text = path.read_text()
    assert "## Second tuning set" in text
    assert "| b | 3 | 0.7500 | 0.7300 | entropy 0.7590 | -0.0090 | 4.00 | 4/4 |" in text
    assert "| a | 3 | 0.7500" not in text


def test_paired_table_groups_distillation_seeds_and_pairs_by_task_and_seed(study, tmp_path):
    ref = study.REFERENCE_GROUP

    def row(name, policy, margin):
        cells = {"policy": {f"t{i}|0": v for i, v in enumerate(policy)},
                 "margin": {f"t{i}|0": v for i, v in enumerate(margin)}}
        return {"variant": name, "policy": 0.6, "random": 0.5, "best_heuristic": "margin 0.6", "policy_minus_best": 0.0,
                "mean_rank": 2.0, "beats_random": "4/4", "val_agreement": None, "val_regret": None, "cells": cells}

    margin = [0.50, 0.60, 0.70, 0.80]
    rows = [row(ref, [0.50, 0.60, 0.70, 0.80], margin), row(f"{ref}-distill-seed-1", [0.52, 0.62, 0.72, 0.82], margin),
            row("x", [0.52, 0.61, 0.73, 0.82], margin), row("x-distill-seed-1", [0.54, 0.63, 0.75, 0.84], margin),
            {k: v for k, v in row("old", margin, margin).items() if k != "cells"}]  # an earlier row: not paired
    groups = {g["group"]: g for g in study.paired_groups(rows)}
    assert set(groups) == {ref, "x"} and groups["x"]["distill_seeds"] == 2
    assert "vs_reference" not in groups[ref]
    assert groups[ref]["vs_margin"]["mean"] == pytest.approx(0.01)  # the mean of its two seeds, less margin
    vs = groups["x"]["vs_reference"]  # x's cells (0.53, 0.62, 0.74, 0.83) less the reference's (0.51, 0.61, 0.71, 0.81)
    assert vs["cells"] == 4 and vs["mean"] == pytest.approx(0.02)
    assert vs["win_tie_loss"] == [4, 0, 0] and vs["ci"][0] > 0 and vs["p"] < 0.05
    path = tmp_path / "results.md"
    study.write_markdown(rows, path, 3)
    assert "## Paired against the default" in path.read_text()
    assert "| x | 2 | 4 | 0.6800 | +0.0200 [" in path.read_text()
    assert study.paired_groups(rows[2:]) == []  # without the reference group there is nothing to pair against
    assert "## Paired against the default on the many-class set" not in path.read_text()

    # cells on the many-class set are paired in their own table, never mixed into the first one
    many = study.MANY_CLASS_TUNING_TARGETS[0]
    for r, policy in zip(rows[:4], (0.30, 0.32, 0.40, 0.42)):
        r["cells"]["policy"][f"{many}|0"], r["cells"]["margin"][f"{many}|0"] = policy, 0.35
        r["cells"]["policy"][f"{many}|1"], r["cells"]["margin"][f"{many}|1"] = policy + 0.01, 0.36
    assert {g["group"]: g["cells"] for g in study.paired_groups(rows, keep_task=lambda t: t != many)} == {ref: 4, "x": 4}
    on_many = {g["group"]: g for g in study.paired_groups(rows, keep_task=lambda t: t == many)}
    assert on_many["x"]["vs_reference"]["mean"] == pytest.approx(0.10) and on_many["x"]["cells"] == 2
    study.write_markdown(rows, path, 3)
    text = path.read_text()
    assert "| x | 2 | 4 | 0.6800 | +0.0200 [" in text  # the first table is unchanged
    assert "## Paired against the default on the many-class set" in text and "| x | 2 | 2 | 0.4150 | +0.1000 [" in text


def test_spiky_cells_are_paired_against_the_session_6_default_in_their_own_table(study, tmp_path):
    """Levers tried after the session-6 default are paired against it, set by set; earlier groups are not listed."""
    ref, new = study.SESSION_6_DEFAULT, "per-class-initial-3-with-spiky-synthetic"
    spiky, plain = study.SPIKY_TUNING_TARGETS[0], study.TUNING_TARGETS[0]

    def row(name, spiky_aulc, plain_aulc):
        cells = {"policy": {f"{spiky}|0": spiky_aulc, f"{spiky}|1": spiky_aulc + 0.01, f"{plain}|0": plain_aulc,
                            f"{plain}|1": plain_aulc},
                 "margin": {f"{spiky}|0": 0.5, f"{spiky}|1": 0.5, f"{plain}|0": 0.6, f"{plain}|1": 0.6}}
        return {"variant": name, "policy": 0.6, "random": 0.5, "best_heuristic": "margin 0.6", "policy_minus_best": 0.0,
                "mean_rank": 2.0, "beats_random": "4/4", "val_agreement": None, "val_regret": None, "cells": cells}

    rows = [row(study.REFERENCE_GROUP, 0.1, 0.6), row(ref, 0.40, 0.61), row(new, 0.45, 0.62)]
    path = tmp_path / "results.md"
    study.write_markdown(rows, path, 3)
    text = path.read_text()
    table = text.split("## Paired against the session-6 default on the spiky set")[1]
    assert f"| {new} | 1 | 2 | 0.4550 | +0.0500 [" in table and study.REFERENCE_GROUP not in table
    two_sets = text.split("## Paired against the session-6 default\n")[1].split("##")[0]
    assert f"| {new} | 1 | 2 | 0.6200 | +0.0100 [" in two_sets  # the spiky cells stay out of the other sets' table


def test_the_session_6_row_is_what_the_embedded_study_runs(study):
    """The variant the default recipe was chosen from builds to the embedded study's own generate, distill and
    extra stores (run through the same run_study), so its table rows describe that recipe (`metaal run`'s default
    study on the task split keeps it and changes only the tasks: tests/test_run_split.py)."""
    from metaal.run import embedded_study

    built = study.build("v", study.variants()["margin-pool-5-per-class-count-with-initial-3-episodes"], None, 3)
    default = embedded_study()
    assert (built.sources, built.generate, built.distill, built.extra_initial) == (
        default.sources, default.generate, default.distill, default.extra_initial)
    assert study.base_study().extra_initial == []  # every other row runs one store


def test_the_spiky_oracle_config_evaluates_the_spiky_set(study):
    import tomllib

    config = tomllib.loads((Path(study.__file__).parent / "configs" / "spiky_set_oracle.toml").read_text())["evaluate"]
    assert config["tasks"] == study.SPIKY_TUNING_TARGETS and config["oracle"] == {"mode": "batch", "margin_pool": 5}


def test_the_source_split_lever_changes_only_the_sources_validation_split(study):
    """Session 9's lever gives the expert about twice the validation items on wine and iris with the same
    pools, and is otherwise the session-6 default; a wrong key would fail here rather than after an hour."""
    from dataclasses import replace

    from metaal.tasks import load_task

    rows = study.variants()
    default = study.build("d", rows["margin-pool-5-per-class-count-with-initial-3-episodes"], None, 3)
    lever = study.build("s", rows["per-class-initial-3-source-val-35"], None, 3)
    assert replace(lever.generate, split=default.generate.split) == default.generate
    assert (lever.distill, lever.extra_initial, lever.evaluate) == (default.distill, default.extra_initial, default.evaluate)
    need = default.generate.loop.initial + default.generate.loop.budget
    for spec in lever.sources:
        before = load_task(spec, 0, default.generate.split, min_pool=need)
        after = load_task(spec, 0, lever.generate.split, min_pool=need)
        assert len(after.pool) == len(before.pool) and len(after.val) >= 2 * len(before.val), spec


def test_the_generation_seed_rows_are_the_session_6_default_with_another_generation_seed(study):
    """The noise-floor rows must change nothing but the generation seed, or their spread is not the
    store-to-store spread the README reports."""
    from dataclasses import replace

    rows = study.variants()
    default = study.build("d", rows["margin-pool-5-per-class-count-with-initial-3-episodes"], None, 3)
    for seed in (1, 2):
        for suffix, distill_seed in (("", 0), ("-distill-seed-1", 1), ("-distill-seed-2", 2)):
            built = study.build("g", rows[f"per-class-initial-3-generate-seed-{seed}{suffix}"], None, 3)
            assert built.generate.seed == seed and replace(built.generate, seed=0) == default.generate
            assert replace(built.distill, seed=0) == default.distill and built.distill.seed == distill_seed
            assert (built.sources, built.extra_initial, built.evaluate) == (default.sources, default.extra_initial,
                                                                            default.evaluate)


@pytest.mark.parametrize("lever", ["per-class-initial-3-source-val-35", "per-class-initial-3-with-10-class-synthetic",
                                   "per-class-initial-3-with-r-sources", "per-class-initial-3-dagger",
                                   "per-class-initial-3-horizon-2"])
def test_a_levers_draws_differ_from_it_only_in_the_generation_seed(study, lever):
    """Session 10 judges store-writing levers draw against draw: their rows for generation seeds 1 and 2 must
    be the lever with that seed and nothing else."""
    from dataclasses import replace

    rows = study.variants()
    name, lever = lever, study.build("s", rows[lever], None, 3)
    for seed in (1, 2):
        for suffix, distill_seed in (("", 0), ("-distill-seed-1", 1), ("-distill-seed-2", 2)):
            built = study.build("g", rows[f"{name}-generate-seed-{seed}{suffix}"], None, 3)
            assert built.generate.seed == seed and replace(built.generate, seed=0) == lever.generate
            assert built.distill.seed == distill_seed and replace(built.distill, seed=0) == lever.distill
            assert (built.sources, built.extra_initial, built.evaluate) == (lever.sources, lever.extra_initial,
                                                                            lever.evaluate)


def test_draw_groups_compare_arms_by_their_generation_seed_draws(study, tmp_path):
    """One store is one observation: distillation seeds are averaged within a draw, cells within a set, and the
    arms' draw means are compared with Welch's test; an arm with one draw is not listed."""
    ref, plain, spiky = study.SESSION_6_DEFAULT, study.TUNING_TARGETS[0], study.SPIKY_TUNING_TARGETS[0]

    def row(name, plain_aulc, spiky_aulc):
        keys = [f"{plain}|0", f"{plain}|1", f"{spiky}|0", f"{spiky}|1"]
        values = [plain_aulc, plain_aulc + 0.02, spiky_aulc, spiky_aulc]
        return {"variant": name, "policy": 0.6, "random": 0.5, "best_heuristic": "margin 0.6", "policy_minus_best": 0.0,
                "mean_rank": 2.0, "beats_random": "4/4", "val_agreement": None, "val_regret": None,
                "cells": {"policy": dict(zip(keys, values)), "margin": dict.fromkeys(keys, 0.60)}}

    rows = [row(ref, 0.60, 0.50), row(f"{ref}-distill-seed-1", 0.62, 0.50),  # draw 0 of the reference: 0.62 / 0.50
            row("per-class-initial-3-generate-seed-1", 0.60, 0.52),  # the reference's draw 1, named after its recipe
            row("per-class-initial-3-generate-seed-2", 0.62, 0.51),
            row("lever", 0.64, 0.50), row("lever-generate-seed-1", 0.66, 0.52), row("lever-generate-seed-2", 0.65, 0.51),
            row("one-draw", 0.90, 0.90)]
    groups = {g["arm"]: g for g in study.draw_groups(rows)}
    assert set(groups) == {ref, "lever"}
    assert groups[ref]["generation_seeds"] == [0, 1, 2] and groups[ref]["distill_seeds"] == [2, 1, 1]
    two = groups[ref]["sets"]["two sets"]
    assert two["cells"] == 2 and two["draw_means"] == pytest.approx([0.62, 0.61, 0.63])
    assert two["vs_margin"] == pytest.approx(0.02) and "vs_reference" not in two
    lever = groups["lever"]["sets"]
    assert lever["two sets"]["vs_reference"] == pytest.approx(0.04) and lever["two sets"]["p"] < 0.01
    assert lever["spiky"]["vs_reference"] == pytest.approx(0.0) and lever["spiky"]["p"] > 0.9
    assert lever["all"]["cells"] == 4 and lever["all"]["vs_reference"] == pytest.approx(0.02)
    assert "many-class" not in lever and "real" not in lever  # no cells there
    assert study.draw_groups(rows[4:]) == []  # without the reference's draws there is nothing to compare with

    path = tmp_path / "results.md"
    study.write_markdown(rows, path, 3)
    table = path.read_text().split("## Arms over generation seeds (draw level)")[1]
    assert "| lever | 0 (1), 1 (1), 2 (1) | two sets | 2 | 0.6500 / 0.6700 / 0.6600 | 0.6600 | +0.0600 | +0.0400 |" in table
    assert f"| {ref} | 0 (2), 1 (1), 2 (1) | all | 4 |" in table and "one-draw" not in table


def test_the_real_set_is_its_own_draw_set_and_not_part_of_all(study):
    """"all" stays the 160 synthetic cells of sessions 9 and 10, so rows evaluated on the real set keep their numbers."""
    real, spiky = f"{study.REAL_TUNING_TARGETS[0]}|3", f"{study.SPIKY_TUNING_TARGETS[0]}|3"
    assert study.task_set(study.REAL_TUNING_TARGETS[1]) == "real"
    assert study.in_draw_set(real, "real") and not study.in_draw_set(real, "all")
    assert study.in_draw_set(spiky, "all") and not study.in_draw_set(spiky, "real")


def test_the_r_sources_lever_adds_only_sources_and_episodes(study):
    rows = study.variants()
    default, lever = (study.build("x", rows[n], None, 3) for n in (study.SESSION_6_DEFAULT,
                                                                   "per-class-initial-3-with-r-sources"))
    assert lever.sources == [*default.sources, *study.R_SOURCES] and lever.generate.tasks == lever.sources
    assert lever.generate.episodes == 40 and (lever.distill, lever.extra_initial) == (default.distill, default.extra_initial)


def test_evaluate_only_refuses_unfinished_variants(study, tmp_path, monkeypatch, capsys):
    """--evaluate-only must never generate or distil: a variant without finished results stops the run first."""
    import sys

    monkeypatch.setattr(sys, "argv", ["study.py", "--out", str(tmp_path), "--only", study.SESSION_6_DEFAULT,
                                      "--real-set", "--evaluate-only", "--markdown", str(tmp_path / "r.md")])
    with pytest.raises(SystemExit, match="--evaluate-only: not finished"):
        study.main()
    assert not any(tmp_path.iterdir())


def test_retired_levers_stay_listed_for_the_tables_but_do_not_run(study, tmp_path, monkeypatch):
    """A lever whose option left metaal keeps its place in the history (the docs tables are ordered by it and
    --rows rebuilds them) but is no runnable variant, and --only refuses it before anything runs."""
    import sys

    rows = study.variants()
    for name, option in (("per-class-initial-3-oracle-repeats-3", "--oracle-repeats"),
                         ("per-class-initial-3-with-10-class-synthetic-class-count", "--count-context"),
                         ("per-class-initial-3-batch-gain-generate-seed-1", "--algo batch-gain"),
                         ("per-class-initial-3-margin-prior-0.2-distill-seed-1", "--policy-margin-prior")):
        assert option in study.RETIRED[name] and name in study.HISTORY and name not in rows
    assert study.HISTORY.index(study.SESSION_6_DEFAULT) < study.HISTORY.index("per-class-initial-3-oracle-repeats-3")
    assert set(study.HISTORY) == set(rows) | set(study.RETIRED)
    monkeypatch.setattr(sys, "argv", ["study.py", "--out", str(tmp_path / "out"), "--markdown", str(tmp_path / "r.md"),
                                      "--only", f"{study.SESSION_6_DEFAULT},per-class-initial-3-oracle-repeats-3"])
    with pytest.raises(SystemExit, match="retired levers .*oracle-repeats-3 \\(--oracle-repeats\\)"):
        study.main()
    monkeypatch.setattr(sys, "argv", ["study.py", "--out", str(tmp_path / "out"), "--only", "no-such-variant"])
    with pytest.raises(SystemExit, match="no such variant.*no-such-variant"):
        study.main()
    assert not (tmp_path / "out").exists()


def test_variant_files_extend_earlier_variants_and_expand_distillation_seeds(study, tmp_path):
    """The TOML form: ``extends`` merges table by table onto an earlier variant, ``distill_seeds`` adds the seed rows
    right after it, a retired entry keeps only its name; mistakes stop the study with the file and variant named."""
    (tmp_path / "01-a.toml").write_text(
        '[sets.first]\ntargets = ["synthetic:seed=1"]\n\n'
        '[variants.a]\nsources = ["sklearn:iris"]\ngenerate.oracle = { mode = "batch", margin_pool = 5 }\n'
        'distill.target = "accuracy"\n\n'
        '[variants.old]\nretired = "--ensemble"\ndistill_seeds = [1]\n')
    (tmp_path / "02-b.toml").write_text('[variants.b]\nextends = "a"\ngenerate.oracle = { margin_pool = 7 }\n'
                                        'distill_seeds = [1, 2]\n')
    data, runnable, retired = study.read_studies(tmp_path)
    assert data["order"] == ["a", "old", "old-distill-seed-1", "b", "b-distill-seed-1", "b-distill-seed-2"]
    assert data["sets"]["first"]["targets"] == ["synthetic:seed=1"] and retired == dict.fromkeys(["old", "old-distill-seed-1"],
                                                                                                   "--ensemble")
    assert runnable["b"] == {"sources": ["sklearn:iris"], "generate": {"oracle": {"mode": "batch", "margin_pool": 7}},
                             "distill": {"target": "accuracy"}}
    assert runnable["b-distill-seed-2"] == study._merge(runnable["b"], {"distill": {"seed": 2}})
    assert runnable["a"]["generate"]["oracle"]["margin_pool"] == 5  # the child did not write into its parent
    for text, message in (('[variants.c]\nextends = "old"\n', "no runnable variant above it"),
                          ('[variants.c]\nextends = "zzz"\n', "no runnable variant above it"),
                          ('[variants.c]\ndistil = { steps = 5 }\n', "unknown keys \\['distil'\\]"),
                          ('[variants.c]\nretired = "--x"\ndistill = { steps = 5 }\n', "a retired variant keeps only"),
                          ('[variants.a]\n', "a is defined twice")):
        (tmp_path / "03-c.toml").write_text(text)
        with pytest.raises(SystemExit, match=f"03-c.toml: variant .*{message}"):
            study.read_studies(tmp_path)


def test_the_shipped_notes_have_every_section_the_tables_use(study):
    sections = study.notes()
    assert {"intro", "paired", "draws", *(f"set {k}" for k in study.EXTRA_SETS)} <= set(sections)
    assert sections["intro"].startswith("# What was tried for the learned policy")


def test_rows_make_the_tables_without_running_or_writing_a_study_json(study, tmp_path, monkeypatch):
    import json
    import sys

    keys = [f"{study.TUNING_TARGETS[0]}|0", f"{study.TUNING_TARGETS[0]}|1"]
    row = {"variant": study.SESSION_6_DEFAULT, "seeds": 10, "policy": 0.61, "random": 0.5, "best_heuristic": "margin 0.6",
           "policy_minus_best": 0.01, "mean_rank": 2.0, "beats_random": "4/4", "val_agreement": None, "val_regret": None,
           "cells": {"policy": dict.fromkeys(keys, 0.61), "margin": dict.fromkeys(keys, 0.60)}}
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([row, {**row, "variant": "no-such-variant"}]))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["study.py", "--rows", str(rows), "--only", study.SESSION_6_DEFAULT, "--out", str(out),
                                      "--seeds", "10", "--markdown", str(tmp_path / "r.md")])
    study.main()
    text = (tmp_path / "r.md").read_text()
    assert f"| {study.SESSION_6_DEFAULT} | 10 | 0.6100 |" in text and "no-such-variant" not in text
    assert not out.exists()


def test_distillation_seed_rows_share_one_generation_of_their_stores(study):
    """A lever's distillation-seed rows write identical stores: one group each generation seed; an arm's other
    generation seeds are groups of their own."""
    rows = study.variants()
    lever = ten = "per-class-initial-3-with-10-class-synthetic"
    names = [lever, f"{lever}-distill-seed-1", f"{ten}-distill-seed-2", f"{lever}-generate-seed-1",
             f"{lever}-generate-seed-1-distill-seed-2", study.SESSION_6_DEFAULT]
    groups = study.store_groups({n: rows[n] for n in names})
    assert groups == [[lever, f"{lever}-distill-seed-1", f"{ten}-distill-seed-2"],
                      [f"{lever}-generate-seed-1", f"{lever}-generate-seed-1-distill-seed-2"], [study.SESSION_6_DEFAULT]]


def test_shared_stores_are_the_ones_the_row_would_have_written(study, tmp_path):
    from metaal.store import fingerprint

    rows = study.variants()
    name, other = study.SESSION_6_DEFAULT, f"{study.SESSION_6_DEFAULT}-distill-seed-1"
    stores = study.generate_stores((name, rows[name], str(tmp_path), 1))
    assert stores == ["store.zarr", "store-initial-3.zarr"]
    assert study.share_stores(tmp_path, [name, other], stores) == 2
    assert study.share_stores(tmp_path, [name, other], stores) == 0  # never over a store that is there
    before = [fingerprint(str(tmp_path / other / s)) for s in stores]
    assert before == [fingerprint(str(tmp_path / name / s)) for s in stores]
    # the row's own generation finds its stores complete and adds nothing
    assert study.generate_stores((other, rows[other], str(tmp_path), 1)) == stores
    assert [fingerprint(str(tmp_path / other / s)) for s in stores] == before


def test_the_dagger_lever_is_the_recipe_with_one_dagger_iteration(study):
    from dataclasses import replace

    rows = study.variants()
    lever = "per-class-initial-3-dagger"
    assert {k: v for k, v in rows[lever].items() if k != "dagger"} == rows[study.SESSION_6_DEFAULT]
    assert all(rows[n]["dagger"] == {"seed_offset": 1000} for n in rows if n.startswith(lever))
    assert study.dagger_seed_offset(rows[lever]) == 1000
    assert study.dagger_seed_offset(rows["margin-pool-5-dagger"]) == 1  # the session-3 row as it was run
    assert study.dagger_seed_offset(rows[study.SESSION_6_DEFAULT]) == 1
    built = study.build("d", rows[lever], None, 3)
    assert replace(built, workers=1) == replace(study.build("r", rows[study.SESSION_6_DEFAULT], None, 3), workers=1)


def test_the_horizon_lever_changes_only_the_oracles_horizon(study):
    from dataclasses import replace

    rows = study.variants()
    default, lever = (study.build("s", rows[n], None, 3) for n in (study.SESSION_6_DEFAULT, "per-class-initial-3-horizon-2"))
    assert lever.generate.oracle == {**default.generate.oracle, "horizon": 2}
    assert replace(lever.generate, oracle=default.generate.oracle) == default.generate
    assert (lever.distill, lever.extra_initial, lever.evaluate, lever.sources) == (
        default.distill, default.extra_initial, default.evaluate, default.sources)


def test_a_dagger_iteration_rolls_in_the_first_policy_on_every_store(study, tmp_path):
    """The first stores are shared with the lever's distillation-seed siblings (in ``iter0``); the second ones are
    written with the first policy's roll-in and another generation seed, for the default and the initial-3 store
    alike, and the final policy is distilled from all four."""
    import json
    from dataclasses import replace

    from metaal.store import store_attrs

    rows = study.variants()
    name, sibling = "per-class-initial-3-dagger", "per-class-initial-3-dagger-distill-seed-1"
    todo = {name: rows[name], sibling: rows[sibling]}
    assert study.store_groups(todo) == [[name, sibling]]
    stores = study.generate_stores((name, rows[name], str(tmp_path), 1))
    assert study.share_stores(tmp_path, [name, sibling], stores, todo) == 2
    assert sorted(p.name for p in (tmp_path / sibling / "iter0").iterdir()) == sorted(stores)
    built = study.build(name, rows[name], 1, 3)
    built = replace(built, distill=replace(built.distill, steps=20, batch_size=16))
    policy = study.dagger_policy(built, tmp_path / name, study.dagger_seed_offset(rows[name]))
    for store in ("store.zarr", "store-initial-3.zarr"):
        config = store_attrs(tmp_path / name / "iter1" / store)["config"]
        assert config["rollin"] == f"policy:{tmp_path / name / 'iter0' / 'policy'}" and config["beta"] == 0.5
        assert config["seed"] == built.generate.seed + 1000
    sources = [Path(s["path"]) for s in json.loads((policy / "metaal-policy.json").read_text())["sources"]]
    assert sorted((p.parent.name, p.name) for p in sources) == sorted(
        (it, s) for it in ("iter0", "iter1") for s in stores)


def test_a_variant_takes_its_siblings_finished_baselines(study, tmp_path):
    root = tmp_path / "study"
    for variant, f in (("first", "margin__seed0.json"), ("first", "policy__seed0.json"), ("second", "entropy__seed0.json")):
        p = root / variant / "results-many" / "runs" / "synthetic_seed=9201" / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{variant}/{f}")
    assert study.reuse_finished_baselines(root, root / "second") == 1
    runs = root / "second" / "results-many" / "runs" / "synthetic_seed=9201"
    assert sorted(p.name for p in runs.iterdir()) == ["entropy__seed0.json", "margin__seed0.json"]
    assert (runs / "margin__seed0.json").read_text() == "first/margin__seed0.json"
    assert study.reuse_finished_baselines(root, root / "second") == 0  # nothing left to copy; its own runs stay


@pytest.mark.parametrize(("session", "merge"), [("12", None), ("13", "12"), ("14", "12"), ("15", None)])
def test_committed_rows_rebuild_the_docs_tables_byte_for_byte(study, tmp_path, monkeypatch, session, merge):
    """docs/results-sessionN.md are what --rows makes of the committed rows (the prose in docs/study-notes.md, the
    table order from the variant files, retired levers included)."""
    import sys

    docs = Path(study.__file__).resolve().parents[1] / "docs"
    argv = ["study.py", "--rows", str(docs / f"study-session{session}.json"), "--seeds", "10",
            "--markdown", str(tmp_path / "r.md"), "--out", str(tmp_path / "out")]
    if merge:
        argv += ["--merge", str(docs / f"study-session{merge}.json")]
    monkeypatch.setattr(sys, "argv", argv)
    study.main()
    assert (tmp_path / "r.md").read_bytes() == (docs / f"results-session{session}.md").read_bytes()
