"""How large a spec may be, and which strings a process launch can take.

Everything a spec holds ends up somewhere that has limits of its own: argv and environment
strings are C strings (a NUL byte ends them, so `posix_spawn` refuses them), environment
names cannot hold `=` (it separates name from value), PostgreSQL text cannot hold NUL, and the
database and every list response carry the whole spec. So these are refused at submission,
where the error can name the field, never at launch, where they would fail a control-loop
step. The figures are documented in docs/specs.md ("Limits").

`walk_problems` checks any JSON-like value (so fields added later are covered too) for NUL
bytes, nesting depth and total size, stopping as soon as the size is over.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

#: the whole spec, as JSON-ish text (strings, keys and numbers counted), at most
MAX_SPEC_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 16
MAX_ARGS: Final = 1024  # command arguments
MAX_ENV: Final = 256  # environment entries
MAX_GPU_MODELS: Final = 64
MAX_ARG_CHARS: Final = 16 * 1024  # one argument, one env value, a shell line
MAX_PATH_CHARS: Final = 4096  # working_dir, checkpoint_dir (Linux PATH_MAX)
MAX_KEY_CHARS: Final = 256  # an env name, a GPU model name
MAX_GPUS: Final = 1024  # per worker
MAX_CPU_MILLI: Final = 10_000 * 1000  # 10,000 cores per worker
MAX_SIZE_MIB: Final = 1 << 30  # 1 PiB: any memory size
MAX_DURATION_S: Final = 366 * 86400.0  # one year: any duration
MAX_PRICE: Final = 1_000_000.0  # per GPU-hour

Loc = tuple[int | str, ...]

NUL_FIX: Final = "contains a NUL byte (\\0), which no program argument, environment entry, " \
    "path or name can hold; remove it"


def walk_problems(value: Any, loc: Loc = (), limit: int = MAX_SPEC_BYTES
                  ) -> Iterator[tuple[Loc, str]]:
    """(location, message) for each NUL byte, for too deep nesting, and once for a value
    larger than `limit` bytes (then the walk stops: the rest is not worth reading)."""
    size = 0
    stack: list[tuple[Loc, Any, int]] = [(loc, value, 0)]
    while stack:
        where, v, depth = stack.pop()
        if depth > MAX_DEPTH:
            yield where, f"nested deeper than {MAX_DEPTH} levels; flatten it"
            continue
        if isinstance(v, str):
            size += len(v) + 2
            if "\x00" in v:
                yield where, NUL_FIX
            elif not _encodable(v):
                yield where, ("is not valid Unicode (a lone surrogate such as \\ud800); "
                              "write the text as UTF-8")
        elif isinstance(v, dict):
            for k, item in v.items():
                size += len(str(k)) + 4
                if isinstance(k, str) and "\x00" in k:
                    yield where, f"key {k!r} {NUL_FIX}"
                stack.append(((*where, str(k)), item, depth + 1))
        elif isinstance(v, list | tuple):
            size += 2 * len(v) + 2
            stack.extend(((*where, i), item, depth + 1) for i, item in enumerate(v))
        else:
            size += 8
        if size > limit:
            yield loc, (f"the spec is larger than {limit // 1024} KiB; keep large data in "
                        "files the job reads (a path in env or command), not in the spec")
            return


def json_within_limits(body: bytes, limit: int = MAX_SPEC_BYTES) -> bool:
    """True when `walk_problems` can find nothing in `json.loads(body)`, judged from the bytes
    without the walk (issue 14: the walk was about a tenth of a submission's CPU in the API):

    - UTF-8 (no NUL byte: UTF-16 and UTF-32 text has them, and UTF-8 JSON cannot hold one);
    - no NUL character and no lone surrogate: `json.loads` refuses raw control characters in
      strings, so a NUL comes only from a `\\u` escape; a surrogate comes from a `\\u` escape
      or from its three UTF-8-like bytes (`ED A0-BF xx`), which `json.loads(bytes)` decodes
      with surrogatepass (review of d6bb241): a body with neither has none;
    - not too deep: every level opens with `[` or `{`, so at most `MAX_DEPTH` of those bytes
      cannot nest past it;
    - not too large: the walk counts at most 8 for a byte of JSON (8 for a one-digit number,
      less for anything else: `"":` counts 4), so a body of a sixteenth of `limit` counts at
      most half of it, whatever a validator before the walk renames (`workers: {min, max}` ->
      `elastic: {...}`, a few bytes).

    False says nothing: the walk decides."""
    return (len(body) * 16 <= limit and b"\x00" not in body and b"\\u" not in body
            and body.count(b"[") + body.count(b"{") <= MAX_DEPTH
            and _ENCODED_SURROGATE.search(body) is None)


#: the first two bytes of a surrogate written as UTF-8 would write it (invalid UTF-8)
_ENCODED_SURROGATE: Final = re.compile(rb"\xed[\xa0-\xbf]")


def _encodable(text: str) -> bool:
    """UTF-8 can encode it: no lone surrogate, which neither a process nor PostgreSQL takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
