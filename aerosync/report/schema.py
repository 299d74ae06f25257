"""The versioned JSON Schema of result.json and its validator.

`result.schema.json` (draft 2020-12, beside this module) documents every key a run's
result carries: the required keys and their types are fixed for a schema version;
nested figure objects accept extra keys so subsystems can add figures and views without
a new version.  A change that removes or retypes a required key bumps
`SCHEMA_VERSION` (and the coordinator's RESULT_SCHEMA_VERSION with it).

`validate_result(d)` raises `ResultSchemaError` naming the JSON path of the first bad
field (e.g. ``cpus/0/ops_per_s``), so a corrupted or foreign file is explained in one
line.  It is a `UsageError`: handing a command a file that is not a result is bad input.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from aerosync.errors import UsageError

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "ResultSchemaError", "load_schema", "validate_result"]

SCHEMA_PATH = Path(__file__).with_name("result.schema.json")
SCHEMA_VERSION = 1


class ResultSchemaError(UsageError):
    """A result dict that does not match result.schema.json; `path` names the field."""

    def __init__(self, path: str, message: str, source: str = "result") -> None:
        self.path, self.message, self.source = path, message, source
        super().__init__(f"{source}: field {path}: {message} (see {SCHEMA_PATH.name}, "
                         f"schema_version {SCHEMA_VERSION})")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The schema as a dict (read once per process)."""
    return json.loads(SCHEMA_PATH.read_text())


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path_text(parts: Any) -> str:
    text = "/".join(str(p) for p in parts)
    return text or "<top level>"


def validate_result(d: Any, source: str = "result") -> None:
    """Raise ResultSchemaError for the first field of `d` that breaks the schema.

    "First" is the error with the shortest, then lexically smallest, path: a missing
    top-level key is named before a bad value deep inside a list.
    """
    errors = list(_validator().iter_errors(d))
    if not errors:
        return
    err = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    if err.validator == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        where = _path_text([*err.absolute_path, missing[0]]) if missing else _path_text(err.absolute_path)
        raise ResultSchemaError(where, "required key is missing", source)
    raise ResultSchemaError(_path_text(err.absolute_path), err.message, source)
