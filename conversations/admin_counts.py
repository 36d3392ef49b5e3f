"""Counting the audit admin's lists without counting a million rows on every page.

An exact COUNT(*) over the messages table reads every row (PostgreSQL has no stored row count),
and the change list asked for one or two of them per page. Here a list's size is:

- exact when it is small: up to COUNT_CAP rows are counted (`SELECT COUNT(*) FROM (... LIMIT
  COUNT_CAP + 1)`, which stops at the cap however large the table);
- on PostgreSQL, the planner's estimate first: pg_class.reltuples for a whole table (kept by
  autovacuum and ANALYZE), EXPLAIN's row estimate for a filtered list. Past the cap, that is the
  count ("about N"); within it, the bounded count makes it exact, under a short statement
  timeout, so that a planner's underestimate falls back to the estimate rather than scanning
  the table (counting 10,000 conversations through an EXISTS took 300 ms at the benchmark's
  scale, where the page itself took 10 ms);
- elsewhere (SQLite), past the cap, "more than COUNT_CAP": pages up to the cap are linked, and
  later pages can still be opened by number (?p=).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import DatabaseError, connections, transaction
from django.db.models import QuerySet

COUNT_CAP = 10_000
# Past this, a bounded count that has not finished gives way to the planner's estimate.
COUNT_TIMEOUT_MS = 100


@dataclass(frozen=True, slots=True)
class ListCount:
    value: int
    # exact: the true number. Otherwise an estimate ("about") or, with at_least, a floor
    # ("more than").
    exact: bool
    at_least: bool = False


def count_of(queryset: QuerySet, *, cap: int | None = None) -> ListCount:
    """The number of rows `queryset` holds, exact up to `cap` and estimated or bounded past it
    (see the module's docstring). At most one bounded count and one EXPLAIN or catalogue read."""
    cap = COUNT_CAP if cap is None else cap
    queryset = queryset.order_by()
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        counted = queryset[: cap + 1].count()
        return ListCount(value=min(counted, cap), exact=counted <= cap, at_least=counted > cap)
    estimate = _pg_estimate(queryset)
    if estimate > cap:
        # Counting up to the cap would only say "more than", at the price of cap rows read.
        return ListCount(value=estimate, exact=False)
    counted = _pg_bounded_count(queryset, cap)
    if counted is not None and counted <= cap:
        return ListCount(value=counted, exact=True)
    # The planner underestimated: past the cap, or too slow to count that far.
    return ListCount(value=max(estimate, cap + 1 if counted is not None else 0), exact=False)


def _pg_estimate(queryset: QuerySet) -> int:
    connection = connections[queryset.db]
    if not queryset.query.where:
        with connection.cursor() as cursor:
            # -1: never vacuumed or analysed (a new table): EXPLAIN's guess from its size then.
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                           [queryset.model._meta.db_table])
            row = cursor.fetchone()
        if row and row[0] >= 0:
            return int(row[0])
    sql, params = queryset.query.get_compiler(queryset.db).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _pg_bounded_count(queryset: QuerySet, cap: int) -> int | None:
    """COUNT(*) of at most cap + 1 rows, or None if it takes longer than COUNT_TIMEOUT_MS."""
    connection = connections[queryset.db]
    try:
        with transaction.atomic(using=queryset.db):
            with connection.cursor() as cursor:
                # Local to the transaction; put back at once, since this may be a savepoint
                # inside a longer one (a timeout's rollback to the savepoint undoes it too).
                cursor.execute("SELECT current_setting('statement_timeout')")
                previous = cursor.fetchone()[0]
                cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                               [f"{COUNT_TIMEOUT_MS}ms"])
                counted = queryset[: cap + 1].count()
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
            return counted
    except DatabaseError:
        # The timeout cancelled the count (the savepoint rolled back, the connection is fine).
        return None


class EstimatedCountPaginator(Paginator):
    """A Paginator for the admin's change lists whose count is count_of()'s: the page links
    follow the estimate, and a page past it can still be opened by number (it is simply
    empty if the estimate was high)."""

    @cached_property
    def list_count(self) -> ListCount:
        return count_of(self.object_list)

    @cached_property
    def count(self) -> int:
        return self.list_count.value

    def validate_number(self, number):
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        if number > self.num_pages and self.list_count.exact:
            raise EmptyPage("That page contains no results")
        return number

    def page(self, number):
        # No orphans and no trimming to the count: the count may be an estimate.
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom:bottom + self.per_page], number, self)
