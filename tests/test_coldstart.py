"""TypiClust and ProbCover on hand-made points where the right picks can be worked out by hand."""

import numpy as np
import pytest

from metaal.acquisition.ops import delta_by_purity, max_coverage, typical_picks
from metaal.registry import get_strategy
from metaal.state import ALState
from metaal.tasks.dataset import Task


class _Identity:
    """A learner whose embedding is the input itself, so the points below are the embedding."""

    def embed(self, X):
        return np.asarray(X, dtype=np.float32)


def _state(points, labelled, n_classes=2, seed=0):
    X = np.asarray(points, dtype=np.float32)
    n = len(X)
    task = Task(spec="hand", seed=seed, X=X, y=np.arange(n) % n_classes, pool=np.arange(n), val=np.zeros(0, np.int64),
                test=np.zeros(0, np.int64), class_names=tuple(str(c) for c in range(n_classes)))
    return ALState(task, _Identity(), np.asarray(labelled, dtype=np.int64), initial=len(labelled), budget=n, seed=seed)


def _ring(centre, k, r=1.0):
    """A centre and k points on a circle around it: the centre is the most typical point of the group."""
    angles = 2 * np.pi * np.arange(k) / k
    return [centre] + [(centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)) for a in angles]


# A: 7 points around (0,0); B: 7 around (20,0), its centre labelled; C: 5 around (0,20).
POINTS = _ring((0, 0), 6) + _ring((20, 0), 6) + _ring((0, 20), 4)
A_CENTRE, B_CENTRE, C_CENTRE = 0, 7, 14


def test_typiclust_takes_the_centres_of_the_uncovered_clusters_largest_first():
    # n = 2 and one label: |L| + n = 3 clusters, A, B and C; B holds the label, so A (7 points) then C (5)
    state = _state(POINTS, [B_CENTRE])
    assert get_strategy("typiclust").select(state, 2).tolist() == [A_CENTRE, C_CENTRE]


def test_typiclust_only_picks_candidates_and_goes_round_again():
    state = _state(POINTS, [B_CENTRE])
    c_group = np.arange(C_CENTRE, C_CENTRE + 5)
    picked = get_strategy("typiclust").select(state, 2, candidates=c_group)
    # A has no candidate: C's centre, then (C now covered once, like B) C again, by typicality a corner of C
    assert picked[0] == C_CENTRE and picked[1] in c_group[1:]


def test_typical_picks_leave_small_clusters_last():
    pts = np.array([[0.0, 0], [0.1, 0], [0, 0.1],                       # cluster 0: 3 points (an outlier group)
                    [5, 5], [5.1, 5], [5, 5.1], [4.9, 5], [5, 4.9], [5.05, 5.05]])  # cluster 1: 6 points
    clusters = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    rng = np.random.default_rng(0)
    # cluster 1 already holds a label, cluster 0 none; cluster 0 is under min_cluster = 5, so 1 still comes first
    picks = typical_picks(pts, clusters, np.array([3]), np.arange(4, 9).tolist() + [0, 1, 2], 1, rng, min_cluster=5)
    assert picks.tolist() == [8]  # (5.05, 5.05) is nearest the group's other points
    picks = typical_picks(pts, clusters, np.array([3]), np.array([0, 1, 2]), 1, rng, min_cluster=5)
    assert picks.tolist() == [0]  # only small cluster candidates: its most typical, the corner


LINE = [(0.0, 0.0), (1, 0), (2, 0), (10, 0), (11, 0), (20, 0)]


def test_max_coverage_on_a_line():
    pts = np.asarray(LINE)
    rng = np.random.default_rng(0)
    # delta 1.5: the ball of 1 holds {0, 1, 2} (3 points, the most); then {10, 11} (2) beats {20} (1); then 20
    picks = max_coverage(pts, 1.5, np.zeros(0, np.int64), np.arange(6), 3, rng).tolist()
    assert picks[0] == 1 and picks[1] in (3, 4) and picks[2] == 5
    # with 1 labelled its ball is covered already: the pair first
    picks = max_coverage(pts, 1.5, np.array([1]), np.array([0, 2, 3, 4, 5]), 2, rng).tolist()
    assert picks[0] in (3, 4) and picks[1] == 5
    # everything covered after three picks: the rest uniformly, still distinct candidates
    picks = max_coverage(pts, 1.5, np.zeros(0, np.int64), np.arange(6), 6, rng).tolist()
    assert sorted(picks) == list(range(6)) and picks[0] == 1


def test_delta_by_the_purity_rule():
    pts = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0], [11, 0], [12, 0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # distance to the nearest point of the other label: 10, 9, 8, 8, 9, 10 -> sorted 8, 8, 9, 9, 10, 10
    assert delta_by_purity(pts, labels, 0.95) == pytest.approx(8.0)  # every ball with radius <= 8 is pure
    assert delta_by_purity(pts, labels, 0.5) == pytest.approx(9.0)  # radius 9: 4 of 6 balls pure


def test_probcover_covers_each_group_before_repeating_one():
    # three groups, three classes: k-means finds the groups, the purity rule gives delta = the smallest distance
    # between two groups (18, from (1,0) to (19,0)), so a ball covers its own group only; B is covered by its label
    state = _state(POINTS, [B_CENTRE], n_classes=3)
    picked = get_strategy("probcover").select(state, 2).tolist()
    assert picked[0] in range(0, 7) and picked[1] in range(14, 19)  # A (7 uncovered) before C (5)
    fixed = get_strategy("probcover")
    fixed.delta = 1.5
    assert fixed.select(_state(LINE, []), 1).tolist() == [1]


def test_both_are_seeded_and_listed():
    state = _state(POINTS, [B_CENTRE])
    for name in ("typiclust", "probcover"):
        s = get_strategy(name)
        assert np.array_equal(s.select(state, 4), s.select(state, 4))
    from click.testing import CliRunner

    from metaal.cli import cli

    out = CliRunner().invoke(cli, ["strategies"]).output
    assert "typiclust" in out and "probcover" in out


def test_both_rank_a_users_pool_from_its_embeddings():
    from metaal.errors import MetaalError
    from metaal.select import rank_pool

    X = np.asarray(POINTS)
    proba = np.full((len(X), 3), 1 / 3)
    sel = rank_pool(proba, X, labelled=[B_CENTRE], labels=[0], n=2, strategy="typiclust")
    assert sel.index.tolist() == [A_CENTRE, C_CENTRE]
    sel = rank_pool(proba, X, labelled=[B_CENTRE], labels=[0], n=2, strategy="probcover")
    assert sel.index[0] in range(0, 7) and sel.index[1] in range(14, 19)
    with pytest.raises(MetaalError, match="needs embeddings"):
        rank_pool(proba, labelled=[B_CENTRE], labels=[0], n=2, strategy="typiclust")
