"""Message search: what a search for words means, and the index that answers it.

The rule (the README's "Search"), the same on PostgreSQL and SQLite:
- A word is a run of letters, digits and combining marks; everything else (spaces,
  punctuation, operators, quotes) only separates words, in the text and in the query alike.
  So `foo-bar`, `foo_bar` and `foo.bar` are all the two words foo and bar, and nothing a person
  types is ever query syntax.
- Each query word of two or more characters matches the words it begins ("kube" finds
  "Kubernetes"); a one-character word matches only itself. Case is ignored; accents are not
  ("Grüße" is not "Gruße").
- `"two words"` in quotes must appear together and in that order; so must the words of one
  token that punctuation splits (`foo-bar`, `1.5`).
- Every term must be in the same message (or all in the title).
- A term containing characters of a script written without spaces between words (Chinese,
  Japanese, Thai, Lao, Khmer, Myanmar) is matched as a case-insensitive substring of the
  message instead: in those scripts a word boundary is not a space, so a word index cannot
  find "日本" inside "私は日本に住んでいます". Such a term is not served by the index (the other
  terms of the search still are), so a search made of it alone reads the person's own
  messages, newest conversations first, until a page is full.
- The first 100,000 characters of a message are indexed (PostgreSQL's tsvector has a size
  limit; the same cut on both keeps the results equal).

The index: on PostgreSQL a GIN index over the message table's column search_vector (kept by
a trigger), `conversations_search_vector(content)` (an immutable SQL function: to_tsvector with the 'simple' configuration, so no language's
stemming or stop words, after ASCII punctuation is turned into spaces so that the parser's
e-mail, URL, version and hyphenated-word tokens never differ from the plain words SQLite
sees); the model does not declare
the column, the database's trigger fills it. On SQLite a contentless FTS5 table, conversations_message_fts (unicode61, accents kept,
marks part of words), kept in step with the message table by triggers. Both are made by
migration 0008.

Case folding is each database's: for a few letters they differ (Greek final sigma, Turkish
dotted I), which can make a result differ between the two for those letters only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField, F, Func, Q, TextField, Value
from django.db.models.expressions import Col, Expression, RawSQL

INDEXED_CHARS = 100_000
MAX_TERMS = 12
FTS_TABLE = "conversations_message_fts"
# PostgreSQL's function from text to words, and the column of it the GIN index holds
# (migration 0008).
PG_VECTOR_FUNCTION = "conversations_search_vector"
PG_VECTOR_COLUMN = "search_vector"
# A stand-in field, so that the column is addressed by its table's alias in any query
# (subqueries relabel it) without Django's model declaring it.
_VECTOR_FIELD = TextField()
_VECTOR_FIELD.set_attributes_from_name(PG_VECTOR_COLUMN)


class _VectorColumn(Expression):
    """The message table's search_vector column, in whichever query it is used."""

    def resolve_expression(self, query=None, *args, **kwargs):
        return Col(query.get_initial_alias(), _VECTOR_FIELD, output_field=TextField())

_QUOTED_OR_BARE = re.compile(r'"([^"]*)"?|(\S+)')
# Scripts written without spaces between words (see the module's docstring).
_NO_SPACE_SCRIPTS = re.compile(
    "[\u0e00-\u0eff"        # Thai, Lao
    "\u1000-\u109f"         # Myanmar
    "\u1780-\u17ff"         # Khmer
    "\u3040-\u30ff"         # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\uff66-\uff9f"         # halfwidth Katakana
    "\U00020000-\U0003134f]"
)


@dataclass(frozen=True, slots=True)
class Term:
    """One thing every matching message must contain: `words` in a row (one word, or a
    phrase), or, for text in a script without spaces, `substring`."""

    words: tuple[str, ...] = ()
    substring: str = ""


def _is_word_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "LNM" or category == "Co"


def words_of(text: str) -> list[tuple[int, str]]:
    """The words of `text` with where each starts, by the rule above (as the indexes split it)."""
    found: list[tuple[int, str]] = []
    start = None
    for at, ch in enumerate(text):
        if _is_word_char(ch):
            if start is None:
                start = at
        elif start is not None:
            found.append((start, text[start:at]))
            start = None
    if start is not None:
        found.append((start, text[start:]))
    return found


def parse(query: str) -> list[Term]:
    """The terms of a search as a person typed it. Never fails: anything that is not a word
    is a separator, an unclosed quote quotes the rest."""
    terms: list[Term] = []
    for match in _QUOTED_OR_BARE.finditer(query):
        quoted, bare = match.group(1), match.group(2)
        chunk = " ".join((quoted if quoted is not None else bare).split())
        if _NO_SPACE_SCRIPTS.search(chunk):
            # Quotes, if any, are the person's, not the text's.
            terms.append(Term(substring=chunk.strip('"')))
            continue
        words = tuple(word for _, word in words_of(chunk))
        if words:
            terms.append(Term(words=words))
    # Duplicates cost the index work and change nothing.
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def _prefix(word: str) -> bool:
    return len(word) > 1


def fts5_expression(terms: list[Term]) -> str:
    """An FTS5 MATCH expression for the word terms: every word quoted (so nothing in it is
    syntax), `*` for a prefix, `+` joining a phrase, AND between terms."""
    parts = []
    for term in terms:
        if term.words:
            parts.append(" + ".join(
                '"' + word.replace('"', '""') + '"' + (" *" if _prefix(word) else "")
                for word in term.words))
    return " AND ".join(parts)


def tsquery_text(terms: list[Term]) -> str:
    """Text for to_tsquery('simple', ...) for the word terms: each word quoted, `:*` for a
    prefix, `<->` joining a phrase, `&` between terms. Words hold only letters, digits and
    marks (parse), so none of them is tsquery syntax."""
    parts = []
    for term in terms:
        if term.words:
            phrase = " <-> ".join(
                "'" + word.replace("'", "''") + "'" + (":*" if _prefix(word) else "")
                for word in term.words)
            parts.append(f"({phrase})")
    return " & ".join(parts)


def message_filter(terms: list[Term], *, vendor: str | None = None,
                   within_conversation: bool = False) -> Q:
    """A filter for Message querysets: the messages that contain every term. Through the
    index on both databases when there is at least one word term; with `within_conversation`
    (a subquery for one conversation's first match), PostgreSQL reads that conversation's
    messages in order instead: run once per listed conversation, a scan of the index costs
    each run the whole scan (27 ms for a phrase at a million messages, 51 times a page)."""
    vendor = vendor or connection.vendor
    condition = Q()
    if any(term.words for term in terms):
        if vendor == "postgresql":
            column = _VectorColumn()
            if within_conversation:
                # Not the indexed expression: the planner walks msg_conv_order and stops at
                # the first match.
                column = Func(column, Value(""), function="COALESCE", output_field=TextField())
            condition &= Q(Func(
                column, Value(tsquery_text(terms)),
                template="%(expressions)s)", arg_joiner=" @@ to_tsquery('simple'::regconfig, ",
                output_field=BooleanField()))
        else:
            condition &= Q(pk__in=RawSQL(
                f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s",
                (fts5_expression(terms),)))
    for term in terms:
        if term.substring:
            condition &= Q(content__icontains=term.substring)
    return condition


def _term_at(words: list[tuple[int, str]], lowered: list[str], term: Term) -> int | None:
    wanted = [word.lower() for word in term.words]
    for i in range(len(words) - len(wanted) + 1):
        if all(lowered[i + j] == w or (_prefix(w) and lowered[i + j].startswith(w))
               for j, w in enumerate(wanted)):
            return words[i][0]
    return None


def first_match(text: str, terms: list[Term]) -> int | None:
    """Where in `text` the earliest match of any term starts; None if a term is missing.
    In Python, by the same rule as the indexes (their case folding aside): for snippets and
    for titles on SQLite."""
    words = words_of(text)
    lowered = [word.lower() for _, word in words]
    folded = text.lower()
    found = []
    for term in terms:
        at = (folded.find(term.substring.lower()) if term.substring
              else _term_at(words, lowered, term))
        if at is None or at < 0:
            return None
        found.append(at)
    return min(found) if found else None


def title_filter(terms: list[Term], *, vendor: str | None = None) -> Q:
    """A filter for Conversation querysets: titles that contain every term. Not indexed: it
    is checked on the person's own conversations only, one short row each."""
    vendor = vendor or connection.vendor
    if not terms:
        return Q()
    condition = Q()
    words = [term for term in terms if term.words]
    if words:
        # A title holding a word (or a word it begins) holds it as text: a LIKE per word is a
        # cheap first sieve, so that the rule proper (a tsvector built per title, or the
        # Python function) runs on the few titles left, not on all of a person's (66 ms for
        # 10,000 conversations on PostgreSQL, whatever the words).
        for term in words:
            for word in term.words:
                condition &= Q(title__icontains=word)
        if vendor == "postgresql":
            condition &= Q(Func(
                F("title"), Value(tsquery_text(words)),
                template=f"{PG_VECTOR_FUNCTION}(%(expressions)s)",
                arg_joiner=") @@ to_tsquery('simple'::regconfig, ",
                output_field=BooleanField()))
        else:
            # The Python rule, registered on each SQLite connection (register_sqlite_functions).
            condition &= Q(Func(
                F("title"), Value(_encode(words)), function="conversations_title_matches",
                output_field=BooleanField()))
    for term in terms:
        if term.substring:
            condition &= Q(title__icontains=term.substring)
    return condition


# Terms travel to the SQLite function as text: words joined by spaces, terms by newlines.
def _encode(terms: list[Term]) -> str:
    return "\n".join(" ".join(term.words) for term in terms)


def _title_matches(title: str | None, encoded: str) -> bool:
    terms = [Term(words=tuple(line.split(" "))) for line in encoded.split("\n")]
    return first_match(title or "", terms) is not None


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """connection_created: the SQL function title_filter calls on SQLite."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            "conversations_title_matches", 2, _title_matches, deterministic=True)
