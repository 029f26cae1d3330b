"""What goes into an exported package: the release's approved prompt versions (the content that
was hashed, plus the system and demo messages rendered at export), their schema files verbatim
with the JSON Schema that was approved, the routing bands and retry limits, the runtime (with
the workbench's portable modules and its vendored offline baseline), a generated
``__init__.py``, and ``manifest.json`` with every hash.

Everything here is a pure function of the workspace's content: no clock, no paths, no
environment but the tool versions recorded in the manifest, so the same release gives the same
bytes.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import sys
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any

from promptgov._portable._hashing import bytes_hash, content_hash
from promptgov._version import RENDER_VERSION, __version__
from promptgov.errors import WorkspaceError
from promptgov.packaging._render_check import check_user_template, template_attributes
from promptgov.packaging._runtime import RUNTIME_FILES
from promptgov.packaging._vendor import portable, vendored

if TYPE_CHECKING:
    import jinja2

    from promptgov.governance._approvals import Approval
    from promptgov.governance._releases import Release
    from promptgov.workspace import Workspace
    from promptgov.workspace._policy import RetryPolicy, Routing
    from promptgov.workspace._prompt import PromptVersion

FUNCTIONS = {"extraction": "extract", "classification": "triage", "draft": "draft"}
"""The function an exported package offers for each task kind."""
SCHEMA_IMPORTS = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types"}
"""What an embedded schema file may import besides the standard library."""
REQUIRES = ["pydantic>=2,<3"]
EXTRAS = {"providers": ["litellm>=1.60"], "offline": ["wordllama>=0.4,<0.5", "numpy>=1.26"],
          "bullmq": ["bullmq>=3.4,<4"]}


@dataclass(frozen=True)
class Contents:
    """An exported package, ready to be written as a wheel."""

    distribution: str
    package: str
    version: str
    summary: str
    readme: str
    files: dict[str, bytes]
    """Path inside the wheel (``support_bot/manifest.json``) → bytes."""
    manifest: dict[str, Any]


def names(release: str, path: str) -> tuple[str, str]:
    """Distribution and import package of release ``release`` (``support_bot`` →
    ``support-bot``, ``support_bot``); refuses a name Python cannot import as a new package."""
    dist = re.sub(r"[-_.]+", "-", release).lower()
    pkg = re.sub(r"[-.]", "_", release)
    taken = set(sys.stdlib_module_names) | {"promptgov", "pydantic", "litellm", "test", "tests"}
    if not pkg.isidentifier() or keyword.iskeyword(pkg) or pkg in taken:
        raise WorkspaceError(path, f"release {release!r} would be exported as package {pkg!r}, "
                             "which shadows another module or is not a Python name",
                             "release under another name, e.g. support_bot")
    return dist, pkg


def contents(ws: Workspace, release: Release, approvals: dict[str, Approval], routing: Routing,
             retry: RetryPolicy) -> Contents:
    """The files of the package of ``release`` (a :class:`Release`) whose prompt versions have
    the approvals ``approvals`` (ref → :class:`Approval`)."""
    dist, pkg = names(release.name, release.file)
    version = str(release.version)
    files: dict[str, bytes] = {}
    prompts: dict[str, dict[str, Any]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    by_kind: dict[str, str] = {}  # function -> the prompt version that offers it
    for ref in sorted(release.prompts):
        pv = ws.prompt(ref)
        fn = FUNCTIONS[pv.kind]
        if fn in by_kind:
            raise WorkspaceError(release.file, f"release {release.name} ships two {pv.kind} "
                                 f"prompts ({by_kind[fn]}, {ref}); an exported package offers "
                                 f"one {fn}()", "export them as two releases")
        by_kind[fn] = ref
        check_user_template(ws, pv)
        probe = pv.probe_input
        prompt_file = f"prompts/{pv.name}.json"
        files[prompt_file] = _json({
            "ref": ref, "content": pv._content(), "probe_input": probe,
            "fixed_messages": pv.render(probe)[:pv.prefix_len]}, indent=None)
        if pv.response_schema and pv.response_schema not in schemas:
            schemas[pv.response_schema] = _schema(ws, pv, pv.response_schema, files)
        a = approvals[ref]
        record = f"governance/approvals/{ref}.toml"
        prompts[ref] = {
            "kind": pv.kind, "function": fn, "file": prompt_file, "model": pv.model.id,
            "content_hash": pv.content_hash, "render_fingerprint": pv.render_fingerprint,
            "schema": pv.response_schema,
            "schema_hash": schemas[pv.response_schema]["hash"] if pv.response_schema else None,
            "evalset": a.evalset, "evalset_hash": a.evalset_hash,
            "approval": {"record": record, "record_sha256": bytes_hash((ws.root / record)
                                                                       .read_bytes()),
                         "status": a.status, "approved_by": a.approved_by,
                         "approved_at": a.model_dump(mode="json")["approved_at"],
                         "run_id": a.run_id, "model": a.model, "tracking": a.tracking,
                         "registry_version": a.registry_version}}
    policy = {"routing": asdict(routing), "retry": asdict(retry)}
    files["policy.json"] = _json(policy)
    runtime = resources.files("promptgov.packaging._runtime")
    for name in RUNTIME_FILES:
        files[name] = runtime.joinpath(name).read_bytes()
    files.update(portable())  # what the runtime shares with the workbench, beside it
    files.update(vendored())  # local/knn for the [offline] extra
    files["py.typed"] = b""
    manifest: dict[str, Any] = {
        "manifest_version": 1, "distribution": dist, "package": pkg, "version": version,
        "release": {"name": release.name, "version": release.version,
                    "description": release.description, "prompts": sorted(release.prompts)},
        "exported_with": {"promptgov": __version__, "render": RENDER_VERSION,
                          "pydantic": metadata.version("pydantic"),
                          "jinja2": metadata.version("jinja2")},
        "prompts": prompts, "schemas": schemas,
        "policy": {"file": "policy.json", "hash": content_hash(policy)}}
    view = _view(ws, release, pkg, dist, version, prompts, schemas, routing, retry)
    files["__init__.py"] = _render("__init__.py.j2", view).encode()
    files["schemas/__init__.py"] = _render("schemas_init.py.j2", view).encode()
    manifest["files"] = {k: bytes_hash(v) for k, v in sorted(files.items())}
    files["manifest.json"] = _json(manifest)
    summary = (f"Frozen export of promptgov release {release.name} v{version}: "
               + ", ".join(sorted(release.prompts)))
    return Contents(dist, pkg, version, summary, _render("README.md.j2", view),
                    {f"{pkg}/{k}": v for k, v in sorted(files.items())}, manifest)


def _schema(ws: Workspace, pv: PromptVersion, sid: str, files: dict[str, bytes]
            ) -> dict[str, Any]:
    """Embed schema ``sid`` (``pv``'s response schema) in ``files``; its manifest entry."""
    sch = ws.schema(sid)
    rel = ws.relpath(sch.file)
    source = sch.file.read_bytes()
    _check_imports(rel, source)
    if pv.kind == "classification" and not {"label", "confidence"} <= set(
            sch.json_schema.get("properties", {})):
        raise WorkspaceError(rel, f"{sch.id} answers classification prompt {pv.ref} but has no "
                             "`label` and `confidence` fields, which triage routes on",
                             "add them to the schema, as a new schema version")
    if not sch.file.stem.isidentifier() or keyword.iskeyword(sch.file.stem):
        raise WorkspaceError(rel, "the file name is not a Python module name",
                             "rename it, e.g. ticket_triage.py")
    module, js = f"schemas/{sch.file.stem}.py", f"schemas/{sch.id}.json"
    files[module], files[js] = source, _json(sch.json_schema)
    return {"module": module, "class": sch.model.__name__, "json_schema": js, "hash": sch.hash}


def _check_imports(rel: str, source: bytes) -> None:
    """An embedded schema file may import only the standard library and pydantic."""
    allowed = set(sys.stdlib_module_names) | SCHEMA_IMPORTS
    for node in ast.walk(ast.parse(source, rel)):
        bad = _not_allowed(node, allowed)
        if bad:
            raise WorkspaceError(rel, f"imports {bad}: an exported package embeds schema files "
                                 "verbatim and installs only pydantic",
                                 "import only pydantic and the standard library in schemas/")


def _not_allowed(node: ast.AST, allowed: set[str]) -> str | None:
    """The module ``node`` imports if it is neither relative nor in ``allowed``, else None."""
    if isinstance(node, ast.ImportFrom) and node.level:
        return "." * node.level + (node.module or "")
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""  # the parser gives `from x import y` a module always
        return module if module.split(".")[0] not in allowed else None
    if isinstance(node, ast.Import):
        return next((a.name for a in node.names if a.name.split(".")[0] not in allowed), None)
    return None


def _view(ws: Workspace, release: Release, pkg: str, dist: str, version: str,
          prompts: dict[str, dict[str, Any]], schemas: dict[str, dict[str, Any]],
          routing: Routing, retry: RetryPolicy) -> dict[str, Any]:
    """What the generated ``__init__.py``, ``schemas/__init__.py`` and README show."""
    views = [_prompt_view(ws.prompt(ref), ref, p, schemas) for ref, p in prompts.items()]
    models = sorted({p["model"] for p in prompts.values()})
    api = ["ConfigurationError", "Decision", "DraftRejected", "Error", "IntegrityError",
           "InvalidOutput", "MANIFEST", "ModelError", "RELEASE", "RETRY", "ROUTING",
           "RenderError", "SCHEMAS", "configure", "verify"]
    api += [p["function"] for p in prompts.values()] + [s["class"] for s in schemas.values()]
    return {"dist": dist, "pkg": pkg, "version": version, "release": release.name,
            "description": release.description, "promptgov_version": __version__,
            "prompts": views, "default_models": ", ".join(models),
            "schemas": [{"id": sid, "module": s["module"][8:-3], "cls": s["class"],
                         "hash": s["hash"]} for sid, s in schemas.items()],
            "routing": routing, "retry": retry, "all_names": sorted(api)}


def _prompt_view(pv: PromptVersion, ref: str, p: dict[str, Any],
                 schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One prompt's function in the generated code and README: its signature, an example
    call, and the inputs dict it passes to the runtime."""
    attrs = template_attributes(pv.user)
    # `today` last and optional: the runtime fills it with the date of the call
    attrs = dict(sorted(attrs.items(), key=lambda va: va[0] == "today"))
    cls = schemas[p["schema"]]["class"] if p["schema"] else None
    return {**p, "ref": ref, "signature": ", ".join(_param(v, a) for v, a in attrs.items()),
            "example": ", ".join(_example_arg(pv, v, a) for v, a in attrs.items()
                                 if not _optional_today(v, a)),
            "inputs": "{" + ", ".join(_input_item(v, a) for v, a in attrs.items()) + "}",
            "schema_class": cls, "approved_by": p["approval"]["approved_by"],
            "run_id": p["approval"]["run_id"]}


def _optional_today(var: str, attrs: list[str]) -> bool:
    """``today`` read as a plain value is the date of the call, which the runtime fills in
    when it is not given (``today.x`` is an ordinary input)."""
    return var == "today" and not attrs


def _param(var: str, attrs: list[str]) -> str:
    if _optional_today(var, attrs):
        return "today: str | None = None"
    return f"{var}: Mapping[str, Any]" if attrs else f"{var}: str"


def _example_arg(pv: PromptVersion, var: str, attrs: list[str]) -> str:
    if not attrs:
        return _example(pv, var)
    shown = [f'"{x}": ...' for x in attrs[:2]] + (["..."] if attrs[2:] else [])
    return "{" + ", ".join(shown) + "}"


def _input_item(var: str, attrs: list[str]) -> str:
    if _optional_today(var, attrs):
        return '**({"today": today} if today else {})'
    return f'"{var}": {var}'


def _example(pv: PromptVersion, var: str) -> str:
    for d in pv.demos:
        v = d.input.get(var)
        if isinstance(v, str) and len(v) <= 50:
            return json.dumps(v, ensure_ascii=False)
    return '"..."'


def _json(value: Any, indent: int | None = 1) -> bytes:
    return (json.dumps(value, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")


_ENV: jinja2.Environment | None = None


def _render(template: str, view: dict[str, Any]) -> str:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.PackageLoader("promptgov.packaging", "_templates"),
                                  undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                  autoescape=False)
    return _ENV.get_template(template).render(view)
