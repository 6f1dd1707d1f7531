"""Python-version facts that the bytecode rewrite depends on, kept in one place."""

import sys

__all__ = ["PY312", "PY313"]

if sys.version_info < (3, 11):  # noqa: UP036  # pragma: no cover - setup.py refuses these too
    raise ImportError(
        "transformer-visualizer needs Python 3.11 or newer: its bytecode rewrite relies on "
        "the exception tables that 3.11 introduced."
    )

#: 3.12 added RETURN_CONST and LOAD_FAST_CHECK (a plain LOAD_FAST no longer checks for NULL).
PY312 = sys.version_info >= (3, 12)
#: 3.13 pushes NULL *after* the callable: LOAD_CONST f; PUSH_NULL; args; CALL.
PY313 = sys.version_info >= (3, 13)
# 3.14 (supported by `bytecode`, untested here) removed RETURN_CONST and keeps 3.13's call
# order, so it needs no flag of its own.
