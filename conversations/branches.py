"""A conversation's shape, from message ids and parents alone: which messages make the branch
the user sees, and which versions each of them has. No text: the shape of a conversation of
thousands of messages costs one narrow query (selectors.branch_tree), and only the messages a
page shows are then loaded whole (conversations.branch_pages)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BranchTree:
    """Edits and regenerations make a tree: a message's siblings share its parent, and the
    roots (first messages, and edits of them) have no parent."""

    # Every message id, oldest first (the conversation's creation order).
    order: tuple[int, ...]
    parent_of: dict[int, int | None]
    # A parent's children, oldest first; None holds the roots.
    children: dict[int | None, list[int]]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int | None]]) -> BranchTree:
        """`rows`: (id, parent id) in creation order (created_at, then id)."""
        order: list[int] = []
        parent_of: dict[int, int | None] = {}
        children: dict[int | None, list[int]] = {}
        for message_id, parent_id in rows:
            order.append(message_id)
            parent_of[message_id] = parent_id
            children.setdefault(parent_id, []).append(message_id)
        return cls(tuple(order), parent_of, children)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.parent_of

    def path(self, leaf_id: int | None = None) -> list[int]:
        """The branch through `leaf_id`, first message first: its ancestors, it, then its newest
        descendants (a leaf that has children is an older branch point, shown with the newest
        version of what followed it). An unknown or absent leaf means the newest message."""
        if not self.order:
            return []
        leaf = leaf_id if leaf_id in self.parent_of else self.order[-1]
        while self.children.get(leaf):
            leaf = self.children[leaf][-1]
        return [*self.ancestors(leaf), leaf]

    def ancestors(self, message_id: int) -> list[int]:
        """The messages before `message_id` on its branch, first message first. A message has
        one parent, so this is the same on every branch through it."""
        out: list[int] = []
        node = self.parent_of.get(message_id)
        # Parents are always older, so there is no cycle; the bound keeps a corrupt row from
        # hanging the socket's thread.
        while node is not None and len(out) < len(self.order):
            out.append(node)
            node = self.parent_of.get(node)
        out.reverse()
        return out

    def siblings(self, message_ids: Iterable[int]) -> dict[int, list[int]]:
        """For each message, it and its siblings (the versions the user can move between),
        oldest first."""
        return {m: self.children.get(self.parent_of.get(m), [m]) for m in message_ids}
