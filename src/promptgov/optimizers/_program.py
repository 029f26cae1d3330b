"""A prompt version as a DSPy program, so DSPy's optimizers can work on it.

:class:`PromptPredictor` is a ``dspy.Predict`` whose ``demos`` are the prompt's few-shot demos
(as ``dspy.Example``) and whose signature instructions are its rendered system message. Its
``forward`` builds the candidate prompt version those demos and instructions describe, renders it
exactly as ``evaluate`` does and calls the promptgov model (``local/knn``, a LiteLLM id through
DSPy's LM, a replay cassette): an optimizer's trial sees the answers the eval will see.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import dspy

from promptgov.errors import ModelError

if TYPE_CHECKING:
    from promptgov.model._base import Model
    from promptgov.workspace._prompt import PromptVersion


def output_fields(pv: PromptVersion, schema_json: dict[str, Any] | None) -> list[str]:
    """The answer's fields: the response schema's properties, or ``answer`` for a draft."""
    if schema_json is None:
        return ["answer"]
    return list(schema_json.get("properties", {})) or ["answer"]


def to_example(inputs: dict[str, Any], output: Any, pv: PromptVersion,
               outs: list[str]) -> dspy.Example:
    """A demo or a case as a ``dspy.Example`` (inputs marked)."""
    fields = output if isinstance(output, dict) else {outs[0]: output}
    return dspy.Example(**inputs, **fields).with_inputs(*inputs)


def to_demo(ex: Any, pv: PromptVersion, outs: list[str]) -> dict[str, Any]:
    """A ``dspy.Example`` (labelled or bootstrapped) back as a prompt demo."""
    data = dict(ex.items()) if hasattr(ex, "items") else dict(ex)
    data.pop("augmented", None)
    inputs = {v: data[v] for v in pv.input_variables if v in data}
    if outs == ["answer"] and pv.kind == "draft":
        return {"input": inputs, "output": str(data.get("answer", ""))}
    output = {k: data.get(k) for k in outs}
    if pv.kind == "classification" and "confidence" in outs and output.get("confidence") is None:
        output["confidence"] = 1.0  # a labelled demo is certain
    return {"input": inputs, "output": output}


class Caller:
    """Calls the model for a candidate prompt; shared by every copy of a program (DSPy deep-copies
    programs, and a model holds locks and caches), so ``deepcopy`` returns it unchanged."""

    def __init__(self, pv: PromptVersion, model: Model, schema_model: Any,
                 schema_json: dict[str, Any] | None):
        self.pv, self.model = pv, model
        self.schema_model, self.schema_json = schema_model, schema_json
        self.outs = output_fields(pv, schema_json)
        self.calls = 0
        self.base_instructions: str | None = None
        """The parent's instructions as the DSPy signature holds them (set by the predictor)."""
        self._lock = threading.Lock()
        self._candidates: OrderedDict[tuple[tuple[int, ...], str | None],
                                      tuple[list[Any], PromptVersion]] = OrderedDict()

    def __deepcopy__(self, memo: dict[int, Any]) -> Caller:
        return self

    def candidate(self, demos: list[Any], instructions: str | None) -> PromptVersion:
        """The prompt version with these demos (and instructions, when changed), built once."""
        from promptgov.workspace._prompt import PromptVersion

        # keyed by the demo objects' identities (the entry keeps them alive, so an id is never
        # reused): every trial case asks for the same candidate, and serialising 770 demos per
        # call would cost more than the model
        key = (tuple(map(id, demos)), instructions)
        with self._lock:
            hit = self._candidates.get(key)
            if hit is not None:
                self._candidates.move_to_end(key)
                return hit[1]
        data = [to_demo(d, self.pv, self.outs) for d in demos]
        body = {**self.pv.model_dump(mode="json"), "demos": data}
        if instructions is not None and instructions != self.base_instructions:
            body["system"] = as_template(instructions)
        pv = PromptVersion.model_validate(body)
        with self._lock:
            self._candidates[key] = (list(demos), pv)
            while len(self._candidates) > 32:
                self._candidates.popitem(last=False)
        return pv

    def answer(self, pv: PromptVersion, inputs: dict[str, Any]) -> dict[str, Any]:
        """The parsed answer of ``pv`` to ``inputs``; every field None when the call or the
        parse failed (a failed trial case scores as wrong, as in an eval)."""
        from promptgov.eval._parse import parse_output
        from promptgov.model._base import Request

        req = Request(messages=pv.messages(inputs), response_schema=self.schema_json,
                      schema_name=self.pv.response_schema, temperature=pv.model.temperature,
                      max_tokens=pv.model.max_tokens, prefix_len=pv.prefix_len,
                      prefix_hash=pv.prefix_hash, label=pv.ref)
        with self._lock:
            self.calls += 1
        try:
            text = self.model.complete(req).text
            if self.schema_model is None:
                return {"answer": text}
            out, _ = parse_output(text, self.schema_model)
        except ModelError:
            return dict.fromkeys(self.outs)
        return {k: out.get(k) for k in self.outs}


def rendered_system(pv: PromptVersion) -> str:
    return pv.render(pv.probe_input)[0]["content"]


def as_template(text: str) -> str:
    """Proposed instructions are plain text: anything jinja2 would read as markup stays text."""
    if "{{" in text or "{%" in text or "{#" in text:
        return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"
    return text


# dspy ships no type information: its Predict and Module are Any to mypy
class PromptPredictor(dspy.Predict):  # type: ignore[misc]
    """One prompt version as a DSPy predictor (see the module documentation)."""

    def __init__(self, caller: Caller):
        pv = caller.pv
        fields: dict[str, Any] = {v: (str, dspy.InputField()) for v in pv.input_variables}
        fields.update({k: (Any, dspy.OutputField()) for k in caller.outs})
        super().__init__(dspy.make_signature(fields, rendered_system(pv),
                                             signature_name="PromptVersion"))
        self.caller = caller
        if caller.base_instructions is None:
            caller.base_instructions = self.signature.instructions
        self.demos = [to_example(d.input, d.output, pv, caller.outs) for d in pv.demos]

    def forward(self, **kwargs: Any) -> dspy.Prediction:
        demos = kwargs.pop("demos", self.demos)
        signature = kwargs.pop("signature", self.signature)
        kwargs.pop("config", None)
        cand = self.caller.candidate(list(demos), signature.instructions)
        out = self.caller.answer(cand, kwargs)
        pred = dspy.Prediction(**out)
        trace = dspy.settings.trace
        if trace is not None:
            trace.append((self, dict(kwargs), pred))
        return pred

    def candidate(self) -> PromptVersion:
        """The prompt version this predictor's current demos and instructions describe."""
        return self.caller.candidate(list(self.demos), self.signature.instructions)


class PromptProgram(dspy.Module):  # type: ignore[misc]  # dspy's Module is Any (untyped)
    """The program DSPy optimizes: one :class:`PromptPredictor`."""

    def __init__(self, caller: Caller):
        super().__init__()
        self.predict = PromptPredictor(caller)

    def forward(self, **kwargs: Any) -> dspy.Prediction:
        return self.predict(**kwargs)
