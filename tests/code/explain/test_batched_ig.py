"""The batched path's bookkeeping, without a model: the packing of texts into passes."""

from __future__ import annotations

from mlclf_utils.explain import batched_ig


def _jobs(lengths):
    return [batched_ig.Job(ids=(1,) * n, baseline_ids=(0,) * n, labels=(0,)) for n in lengths]


def test_packs_hold_similar_lengths_longest_first():
    lengths = [10, 128, 100, 10, 120, 40, 128, 11]
    packs = batched_ig.pack_jobs(_jobs(lengths))
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))  # none lost
    assert [[lengths[i] for i in pack] for pack in packs] == [[128, 128, 120], [100], [40],
                                                               [11, 10, 10]]
    for pack in packs:
        longest = max(lengths[i] for i in pack)
        assert min(lengths[i] for i in pack) >= batched_ig.PACK_LENGTH_RATIO * longest


def test_every_text_alone_at_ratio_one_when_lengths_differ():
    assert batched_ig.pack_jobs(_jobs([3, 5, 4]), ratio=1.0) == [[1], [2], [0]]
    assert batched_ig.pack_jobs([]) == []
