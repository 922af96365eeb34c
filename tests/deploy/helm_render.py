"""A stand-in for `helm template` (no helm binary here): renders the subset of Go templates
that deploy/helm/corral uses, and refuses anything else, so the chart cannot quietly grow past
what this checks.

Supported: `{{ PIPELINE }}` and `{{- ... -}}` trimming; `if` / `end` (with `not`); values
`.Values.a.b`, `.Release.Name`, `.Chart.X`; string and number literals; `( ... )` groups; and
the functions `quote`, `default`, `printf` (%s, %v), `toYaml`, `nindent`, `not`. Go's and
sprig's semantics for these: empty values ("", 0, false, {}, [], nil) are false; `default X`
takes X when the piped value is empty; `nindent N` is a newline then the text indented by N.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

_ACTION = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class Unsupported(ValueError):
    pass


def render(template: str, context: dict[str, Any]) -> str:
    out: list[str] = []
    stack: list[bool] = []  # an if's condition, per nesting level
    pos = 0
    for m in _ACTION.finditer(template):
        space, trim_left, body, trim_right = m.groups()
        text = template[pos:m.start()] + ("" if trim_left else space)
        if all(stack):
            out.append(text)
        pos = m.end()
        if trim_right:
            while pos < len(template) and template[pos] in " \t\r\n":
                pos += 1
        if body.startswith("/*"):
            continue
        if body.startswith("if "):
            stack.append(all(stack) and _truthy(_pipeline(body[3:], context)))
        elif body == "end":
            stack.pop()
        elif body.split()[0] in {"else", "range", "with", "define", "template", "include"}:
            raise Unsupported(f"{{{{ {body} }}}}: not in this stand-in; extend it with a test")
        elif all(stack):
            out.append(_text(_pipeline(body, context)))
    if stack:
        raise Unsupported("an if without its end")
    out.append(template[pos:])
    return "".join(out)


def _truthy(v: Any) -> bool:
    return v not in (None, "", 0, False) and v != {} and v != []


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _pipeline(expr: str, ctx: dict[str, Any]) -> Any:
    stages = _split(expr, "|")
    value = _call(stages[0], ctx, None, piped=False)
    for stage in stages[1:]:
        value = _call(stage, ctx, value, piped=True)
    return value


def _split(expr: str, sep: str) -> list[str]:
    parts, depth, quoted, cur = [], 0, False, ""
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _words(expr: str) -> list[str]:
    words, depth, cur, quoted = [], 0, "", False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
        if not quoted and ch == ")":
            depth -= 1
        if ch.isspace() and depth == 0 and not quoted:
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        words.append(cur)
    return words


def _term(word: str, ctx: dict[str, Any]) -> Any:
    if word.startswith("(") and word.endswith(")"):
        return _pipeline(word[1:-1], ctx)
    if word.startswith('"'):
        return shlex.split(word)[0]
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if word.startswith("."):
        value: Any = ctx
        for key in word[1:].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value
    raise Unsupported(f"{word!r}: not a value this stand-in knows")


def _call(stage: str, ctx: dict[str, Any], value: Any, *, piped: bool) -> Any:
    words = _words(stage)
    name, args = words[0], [_term(w, ctx) for w in words[1:]]
    if piped:
        args.append(value)
    if name.startswith((".", '"', "(")) or re.fullmatch(r"-?\d+", name):
        if args:
            raise Unsupported(f"{stage!r}: a value takes no arguments")
        return _term(name, ctx)
    if name == "quote":
        return '"' + _text(args[0]).replace("\\", "\\\\").replace('"', '\\"').replace(
            "\n", "\\n") + '"'
    if name == "default":
        return args[1] if _truthy(args[1]) else args[0]
    if name == "not":
        return not _truthy(args[0])
    if name == "printf":
        return re.sub(r"%[sv]", "{}", args[0]).format(*(_text(a) for a in args[1:]))
    if name == "toYaml":  # as helm: {} and [] print as such
        return yaml.safe_dump(args[0], sort_keys=False, default_flow_style=None if args[0]
                              else True).rstrip("\n")
    if name == "nindent":
        pad = " " * args[0]
        return "\n" + "\n".join(pad + line if line else line for line in _text(args[1]).split("\n"))
    raise Unsupported(f"function {name!r}: not in this stand-in")
