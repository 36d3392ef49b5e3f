"""The message search index (conversations.fulltext has the rule it serves).

PostgreSQL: an immutable function from message text to a tsvector, a column of it
(search_vector) kept by a trigger and filled for existing messages in batches, and a GIN index
over that, built CONCURRENTLY so that writes go on while a large table is indexed; then ANALYZE, because
the planner's choice between the index and walking a person's newest conversations rests on
the statistics of the index's expression, which exist only once it has been analysed.
SQLite: a contentless FTS5 table, filled from the existing messages, and triggers that keep
it in step on insert, update of the content and delete. Each half is a no-op on the other
database.
"""

from django.db import migrations

# Fixed here, not imported: a migration keeps meaning what it did (conversations.fulltext
# names the same three).
FTS_TABLE = "conversations_message_fts"
INDEXED_CHARS = 100_000
PG_VECTOR_FUNCTION = "conversations_search_vector"
PG_VECTOR_COLUMN = "search_vector"

# ASCII punctuation becomes spaces before PostgreSQL's parser sees the text: it would otherwise
# make one token of an e-mail address, a URL, a path, "1.5" or "foo-bar" (and shift the
# positions phrases rely on), where SQLite's tokenizer sees plain words.
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {PG_VECTOR_FUNCTION}(body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_tsvector('simple'::regconfig,
                     translate(left(body, {INDEXED_CHARS}),
                               {"'" + _PUNCTUATION.replace("'", "''") + "'"},
                               {"'" + " " * len(_PUNCTUATION) + "'"}))
$$
"""
# Stored, not an index over the expression: the parser costs about 0.7 ms per kilobyte, and
# the sidebar's plan for a common word (walk the person's newest conversations, check each
# message) and the recheck of a phrase would pay it per message read; reading a stored vector
# costs microseconds. The price is the column's size (about that of the text). Django's model
# does not know the column; conversations.fulltext names it.
# A plain column kept by a trigger, not a generated one: adding a generated column rewrites the
# whole table under an exclusive lock (about 15 minutes at a million messages, with every turn
# waiting), where a nullable column is added at once and filled below in batches while people
# chat. The trigger fills it on every insert and on a change of the text.
PG_COLUMN = [
    f"ALTER TABLE conversations_message ADD COLUMN IF NOT EXISTS {PG_VECTOR_COLUMN} tsvector",
    f"""CREATE OR REPLACE FUNCTION {PG_VECTOR_FUNCTION}_fill() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' OR NEW.content IS DISTINCT FROM OLD.content
         OR NEW.{PG_VECTOR_COLUMN} IS NULL THEN
        NEW.{PG_VECTOR_COLUMN} := {PG_VECTOR_FUNCTION}(NEW.content);
      END IF;
      RETURN NEW;
    END $$""",
    f"""CREATE TRIGGER {PG_VECTOR_FUNCTION}_fill BEFORE INSERT OR UPDATE
    ON conversations_message FOR EACH ROW EXECUTE FUNCTION {PG_VECTOR_FUNCTION}_fill()""",
]
PG_COLUMN_BACKWARDS = [
    f"DROP TRIGGER IF EXISTS {PG_VECTOR_FUNCTION}_fill ON conversations_message",
    f"DROP FUNCTION IF EXISTS {PG_VECTOR_FUNCTION}_fill()",
    f"ALTER TABLE conversations_message DROP COLUMN IF EXISTS {PG_VECTOR_COLUMN}",
    f"DROP FUNCTION IF EXISTS {PG_VECTOR_FUNCTION}(text)",
]
BACKFILL_BATCH = 5_000


def _backfill(apps, schema_editor):
    """The messages written before the trigger existed, a batch per transaction (each locks
    only its own rows)."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(min(id), 0), coalesce(max(id), 0) "
                       "FROM conversations_message")
        low, high = cursor.fetchone()
    for start in range(low, high + 1, BACKFILL_BATCH):
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE conversations_message SET {PG_VECTOR_COLUMN} = "
                f"{PG_VECTOR_FUNCTION}(content) WHERE id >= %s AND id < %s "
                f"AND {PG_VECTOR_COLUMN} IS NULL", [start, start + BACKFILL_BATCH])
        if not connection.get_autocommit():
            connection.commit()


# Serves conversations.fulltext.message_filter: the sidebar's search and the audit's.
PG_INDEX = (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS msg_content_search ON conversations_message "
            f"USING gin ({PG_VECTOR_COLUMN})")

_INDEXED = f"substr({{row}}.content, 1, {INDEXED_CHARS})"
SQLITE_FORWARDS = [
    # Contentless: the words only (the text is in the message table); marks count as letters
    # and accents are kept, as on PostgreSQL.
    f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        content, content='',
        tokenize="unicode61 remove_diacritics 0 categories 'L* N* Co M*'")""",
    f"INSERT INTO {FTS_TABLE}(rowid, content) "
    f"SELECT id, {_INDEXED.format(row='conversations_message')} FROM conversations_message",
    f"""CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON conversations_message BEGIN
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, {_INDEXED.format(row='new')});
    END""",
    # A contentless table forgets a row given the words it was indexed with. Django's save()
    # writes every column: only a change of the text reindexes.
    f"""CREATE TRIGGER {FTS_TABLE}_update AFTER UPDATE OF content ON conversations_message
        WHEN old.content IS NOT new.content BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
            VALUES ('delete', old.id, {_INDEXED.format(row='old')});
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, {_INDEXED.format(row='new')});
    END""",
    f"""CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON conversations_message BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
            VALUES ('delete', old.id, {_INDEXED.format(row='old')});
    END""",
]
SQLITE_BACKWARDS = [
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_insert",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_update",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_delete",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]


def _run(vendor: str, statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == vendor:
            for statement in statements:
                schema_editor.execute(statement, params=None)
    return run


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; the other steps ask for theirs.
    atomic = False

    dependencies = [
        ("conversations", "0007_cost_and_budgets"),
    ]

    operations = [
        migrations.RunPython(_run("sqlite", SQLITE_FORWARDS), _run("sqlite", SQLITE_BACKWARDS),
                             atomic=True, elidable=False),
        migrations.RunPython(_run("postgresql", [PG_FUNCTION, *PG_COLUMN]),
                             _run("postgresql", PG_COLUMN_BACKWARDS), atomic=True),
        migrations.RunPython(_backfill, migrations.RunPython.noop, atomic=False),
        migrations.RunPython(
            _run("postgresql", [PG_INDEX, "ANALYZE conversations_message"]),
            _run("postgresql", ["DROP INDEX CONCURRENTLY IF EXISTS msg_content_search"]),
            atomic=False),
    ]
