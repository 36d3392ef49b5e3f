"""A conversation's shape from ids and parents: the branch shown and each message's versions."""

from __future__ import annotations

import pytest

from conversations.branches import BranchTree

# 1 ─ 2 ─ 3 ─ 4          (the first answer, then a follow-up)
#   └ 5 ─ 6              (2 regenerated as 5, answered on by 6)
# 7 ─ 8                  (the first message edited)
TREE = BranchTree.from_rows([(1, None), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, None),
                             (8, 7)])


def test_the_default_branch_ends_at_the_newest_message():
    assert TREE.path() == [7, 8]


def test_a_leaf_with_children_continues_along_its_newest_descendants():
    assert TREE.path(1) == [1, 5, 6]
    assert TREE.path(2) == [1, 2, 3, 4]
    assert TREE.path(3) == [1, 2, 3, 4]


def test_an_unknown_leaf_means_the_newest_message():
    assert TREE.path(999) == [7, 8]
    assert BranchTree.from_rows([]).path() == []


def test_ancestors_are_the_same_on_every_branch_through_a_message():
    assert TREE.ancestors(4) == [1, 2, 3]
    assert TREE.ancestors(1) == []
    assert 4 in TREE and 999 not in TREE


def test_siblings_are_the_versions_in_creation_order_roots_included():
    assert TREE.siblings([1, 2, 3, 6, 8]) == {1: [1, 7], 2: [2, 5], 3: [3], 6: [6], 8: [8]}


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
