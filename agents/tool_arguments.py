"""A model's tool arguments checked against the tool's input schema before anything runs.

A call that does not fit goes back to the model as a tool error it can act on (the message
says what is wrong and where), instead of reaching a server that may half-act on it. Schemas
come from servers, so a schema that is itself broken is not the model's fault: it is logged and
the call goes on, and the server judges the arguments.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 500


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    # MCP's default dialect is 2020-12; a schema naming another "$schema" gets that one.
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def check_arguments(*, schema: dict, arguments: dict) -> str | None:
    """None when `arguments` fit `schema`; else a short message for the model."""
    if not schema:
        return None
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except (SchemaError, TypeError, ValueError) as exc:
        logger.warning("a tool's input schema is not valid JSON Schema, not checked: %s",
                       str(exc)[:200])
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
    return f"Not run: the arguments do not match the tool's schema at {where}: {error.message}"[
        :MAX_MESSAGE_CHARS]
