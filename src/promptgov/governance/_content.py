"""What ``check`` and ``lock`` verify inside the content, beyond hashes:

* every demo's output validates against the prompt's response schema (and, for a
  classification prompt, names one of its labels);
* every case's expected value validates against the response schema of each prompt scored on
  the evalset (an extraction answer must hold every field the schema requires; a classification
  answer must hold a valid ``label``);
* no demo's input equals an input of the evalset the prompt is scored on (contamination): equal
  after folding case and whitespace, or *nearly* equal, i.e. equal once punctuation is dropped too.

Inputs are compared through short hashes of their normalised text, so a prompt's demo keys are
derived once with the prompt and cached with it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # pydantic loads when content is validated, not with `check`'s import
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

    from promptgov.workspace._prompt import PromptVersion

_MODELS: dict[tuple[str, str], type[BaseModel]] = {}
_PUNCT = re.compile(r"[^\w\s]+")


def schema_model(file: Path | str, ref: str) -> type[BaseModel] | None:
    """The pydantic model of contract ``ref`` declared in ``file`` (imported once a process)."""
    key = (str(file), ref)
    if key not in _MODELS:
        from promptgov.workspace._schema import load_schema_file

        for s in load_schema_file(Path(file)):
            _MODELS[(str(file), s.id)] = s.model
    return _MODELS.get(key)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def input_keys(inputs: dict[str, Any]) -> tuple[str, str]:
    """(exact, near) keys of a case or demo input: hashes of its values normalised for case
    and whitespace, and additionally without punctuation."""
    exact = "\x1f".join(f"{k}={_norm(str(v))}" for k, v in sorted(inputs.items()))
    near = " ".join(_PUNCT.sub(" ", exact.replace("\x1f", " ")).split())
    return _h(exact), _h(near)


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(the whole answer)"


def _msg(err: ErrorDetails) -> str:
    """pydantic's message, with a long enum's every value left out."""
    if err["type"] in ("literal_error", "enum") and len(err["msg"]) > 120:
        n = err["msg"].count("'") // 2
        return f"{err.get('input')!r} is not one of the schema's {n} allowed values"
    return err["msg"]


def demo_problems(pv: PromptVersion, model: type[BaseModel] | None) -> list[str]:
    """One line per demo whose output the response schema (or the label set) refuses."""
    from pydantic import ValidationError

    out = []
    for i, d in enumerate(pv.demos):
        if pv.kind == "draft" or model is None:
            break
        try:
            model.model_validate(d.output)
        except ValidationError as e:
            err = e.errors()[0]
            out.append(f"demos[{i}].output.{_loc(err['loc'])}: {_msg(err)} (schema "
                       f"{pv.response_schema})")
            continue
        output = cast("dict[str, Any]", d.output)  # the schema, a model, just accepted it
        if pv.kind == "classification" and pv.labels and output.get("label") not in pv.labels:
            out.append(f"demos[{i}].output.label: {output.get('label')!r} is not one of the "
                       "prompt's labels")
    return out


def expected_problems(path: Path, kind: str, model: type[BaseModel], schema: str,
                      limit: int = 5) -> list[tuple[int, str]]:
    """``(line, problem)`` for cases of ``path`` (cases.jsonl) whose expected value does not
    fit ``model``; at most ``limit``, then one line saying how many more."""
    from pydantic import TypeAdapter, ValidationError

    from promptgov.workspace._yamlio import iter_jsonl

    # a field of a class-defined model always has its annotation (None: FieldInfo built by hand)
    label = TypeAdapter(cast("type[Any]", model.model_fields["label"].annotation)) \
        if kind == "classification" and "label" in model.model_fields else None
    out: list[tuple[int, str]] = []
    more = 0
    for line, obj in iter_jsonl(path):
        exp = obj.get("expected")
        try:
            if kind == "classification":
                if not isinstance(exp, dict) or "label" not in exp:
                    raise _Bad("expected.label: missing (a classification case expects "
                               '{"label": ...})')
                if label is not None:
                    label.validate_python(exp["label"])
            else:
                model.model_validate(exp)
        except _Bad as e:
            problem = str(e)
        except ValidationError as e:
            err = e.errors()[0]
            where = "label" if kind == "classification" else _loc(err["loc"])
            problem = f"expected.{where}: {_msg(err)}"
        else:
            continue
        if len(out) < limit:
            out.append((line, f"case {obj.get('id')!r} {problem} (schema {schema})"))
        else:
            more += 1
    if more:
        out.append((0, f"... and {more} more cases whose expected value does not fit {schema}"))
    return out


class _Bad(Exception):
    pass


def overlaps(demo_keys: list[list[str]], cases: dict[str, str], near: dict[str, str]
             ) -> list[tuple[int, str, str]]:
    """``(demo index, case id, "equals"|"nearly equals")`` for each demo whose input is an
    evalset case's (``cases``/``near``: exact/near key → case id)."""
    out = []
    for i, (exact, nearly) in enumerate(demo_keys):
        if exact in cases:
            out.append((i, cases[exact], "equals"))
        elif nearly in near:
            out.append((i, near[nearly], "nearly equals"))
    return out


def evalset_index(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The exact and near keys of every case input of ``path`` (cases.jsonl) → case id."""
    from promptgov.workspace._yamlio import iter_jsonl

    exact: dict[str, str] = {}
    near: dict[str, str] = {}
    for _, obj in iter_jsonl(path):
        if isinstance(obj.get("input"), dict):
            e, n = input_keys(obj["input"])
            exact.setdefault(e, str(obj.get("id")))
            near.setdefault(n, str(obj.get("id")))
    return exact, near


def contamination(pv: PromptVersion, es_dir: Path) -> list[str]:
    """One line per demo of ``pv`` whose input is (nearly) an input of the evalset in
    ``es_dir``: ``approve`` refuses evidence from such an evalset."""
    exact, near = evalset_index(es_dir / "cases.jsonl")
    keys = [list(input_keys(d.input)) for d in pv.demos]
    return [f"demos[{i}] {how} case {cid}" for i, cid, how in overlaps(keys, exact, near)]
