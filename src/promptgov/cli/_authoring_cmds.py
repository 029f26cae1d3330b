"""``promptgov new schema|prompt|evalset|version`` and ``promptgov evalset import``: authoring a
new use case without hand-written Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import _errors
from promptgov.cli._jobs_cmds import evalset_app

new_app = typer.Typer(no_args_is_help=True, help="Create a schema, prompt or evalset stub, or "
                      "the next version of a prompt.")
app.add_typer(new_app, name="new")

KindOpt = Annotated[str, typer.Option("--kind", "-k",
                                      help="extraction | classification | draft")]


def _done(path: Path, root: Path, then: str) -> None:
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    print(f"wrote {rel}\nnext: {then}")


@new_app.command("schema")
def new_schema_cmd(name: Annotated[str, typer.Argument(help="e.g. hotel_booking")],
                   kind: KindOpt = "extraction", ws: WorkspaceOpt = None) -> None:
    """Write schemas/NAME.py: a working pydantic contract NAME@1 to edit.

    Example: promptgov new schema hotel_booking --kind extraction
    """
    from promptgov.workspace._scaffold import new_schema

    w = workspace(ws)
    with _errors():
        p = new_schema(name, kind=kind, workspace=w)  # type: ignore[arg-type]
    _done(p, w.root, f"edit its fields, then `promptgov new prompt {name} --kind {kind}`")


@new_app.command("prompt")
def new_prompt_cmd(name: Annotated[str, typer.Argument(help="e.g. hotel_booking")],
                   kind: KindOpt = "extraction",
                   schema: Annotated[str | None, typer.Option(
                       help="Response schema name@version (default NAME@1).")] = None,
                   ws: WorkspaceOpt = None) -> None:
    """Write prompts/NAME/v1.yaml, wired to schema NAME@1 and evalset NAME.

    Example: promptgov new prompt hotel_booking --kind extraction
    """
    from promptgov.workspace._scaffold import new_prompt

    w = workspace(ws)
    with _errors():
        p = new_prompt(name, kind=kind, schema=schema, workspace=w)  # type: ignore[arg-type]
    _done(p, w.root, f"`promptgov new evalset {name}` (or `promptgov evalset import`), then "
          "`promptgov lock` and `promptgov eval " + name + "@1`")


@new_app.command("evalset")
def new_evalset_cmd(name: Annotated[str, typer.Argument(help="e.g. hotel_booking")],
                    source: Annotated[str, typer.Option(help="Where the cases come from.")]
                    = "TODO: where the cases come from",
                    license: Annotated[str, typer.Option(help="The cases' license.")]
                    = "TODO: the cases' license",
                    ws: WorkspaceOpt = None) -> None:
    """Write evalsets/NAME/manifest.yaml (every field, commented) and an empty cases.jsonl.

    Example: promptgov new evalset hotel_booking --source "my team" --license CC-BY-4.0
    """
    from promptgov.workspace._scaffold import new_evalset

    w = workspace(ws)
    with _errors():
        p = new_evalset(name, source=source, license=license, workspace=w)
    _done(p, w.root, f"add cases to {name}/cases.jsonl, or `promptgov evalset import FILE "
          f"--name {name} ...`")


@new_app.command("version")
def new_version_cmd(prompt: Annotated[str, typer.Argument(help="A prompt name.")],
                    ws: WorkspaceOpt = None) -> None:
    """Copy the latest version of PROMPT to the next number, to edit.

    Example: promptgov new version ticket_triage
    """
    from promptgov.workspace._scaffold import new_version

    w = workspace(ws)
    with _errors():
        p = new_version(prompt, workspace=w)
    _done(p, w.root, "edit it, `promptgov lock`, then evaluate it")


def _cols(values: list[str]) -> list[str]:
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


@evalset_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .parquet table.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Evalset name (folder).")],
    input: Annotated[list[str], typer.Option(
        "--input", "-i", help="Column(s) that become the case input (repeat, or a,b).")],
    expected: Annotated[list[str], typer.Option(
        "--expected", "-e", help="Column(s) that become the expected answer's fields.")],
    source: Annotated[str, typer.Option(help="Where the cases come from.")],
    license: Annotated[str, typer.Option(help="The cases' license.")],
    id: Annotated[str | None, typer.Option("--id", help="Column of case ids (default: "
                                           "generated).")] = None,
    schema: Annotated[str | None, typer.Option(help="Response schema name@version typing the "
                                               "expected values (default: the prompt's).")]
    = None,
    split: Annotated[str, typer.Option(help="test | dev | train")] = "test",
    description: Annotated[str, typer.Option(help="What the cases are.")] = "",
    ws: WorkspaceOpt = None,
) -> None:
    """Write a table's rows as the next version of an evalset, typed by the response schema.

    Example: promptgov evalset import hotels.csv --name hotel_booking --input text
    --expected intents,date,people --source "NLU++ hotels" --license CC-BY-4.0
    """
    from promptgov.workspace._import import evalset_from_frame, read_table

    w = workspace(ws)
    with _errors():
        es = evalset_from_frame(read_table(file), name, input=_cols(input),
                                expected=_cols(expected), source=source, license=license, id=id,
                                schema=schema, split=split, description=description,
                                workspace=w, origin=str(file))
    print(f"wrote evalsets/{name} ({es.ref}, {len(es)} cases)\nnext: `promptgov lock`")
