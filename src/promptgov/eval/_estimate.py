"""What an evaluation would send and cost, before anything is sent (``promptgov eval
--dry-run``): cases, prompt tokens and dollars from the price map, so that a 32k-token prompt
times 770 cases is seen not to be free before it is paid for.

Prompt tokens are counted with tiktoken's ``cl100k_base`` (the encoding file LiteLLM's wheel
ships; LiteLLM is not imported, nothing is downloaded) over every message's content plus
OpenAI's published framing (3 per message, 3 for the reply): exact for OpenAI's GPT-4 family,
an estimate for other tokenizers. The fixed part of the prompt (system and demos) is counted
once. Completion tokens are bounded by the prompt's ``max_tokens``; the cost uses that bound, so
it is an upper estimate (retries and re-asks are not included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptgov.eval._engine import WorkspaceLike


@dataclass(frozen=True)
class Estimate:
    """What ``eval`` would send: per run and per case."""

    prompt: str
    evalset: str
    model: str
    cases: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_usd: float | None
    """Upper estimate in USD; 0.0 for local models; None when the price map lacks the model."""

    @property
    def cost_per_1k_usd(self) -> float | None:
        return None if self.cost_usd is None or not self.cases else \
            1000 * self.cost_usd / self.cases

    def summary(self) -> str:
        per = self.prompt_tokens // max(self.cases, 1)
        cost = ("cost unknown: the model is not in the price map (fix: add it to [prices] in "
                "governance/policy.toml)" if self.cost_usd is None else
                f"estimated at most ${self.cost_usd:,.2f} (${self.cost_per_1k_usd:,.2f} per "
                "1,000 cases)")
        return (f"{self.prompt} on {self.evalset} with {self.model}: {self.cases:,} cases, "
                f"{self.prompt_tokens:,} prompt tokens ({per:,} per case), at most "
                f"{self.max_completion_tokens:,} completion tokens; {cost}")


def estimate(ref: str, *, workspace: WorkspaceLike = None, model: str | None = None,
             evalset: str | None = None) -> Estimate:
    """The cases, tokens and cost of evaluating ``ref``; nothing is sent or logged.

    Example:
        >>> pg.estimate("ticket_triage@2", model="openai/gpt-4o-mini").summary()  # doctest: +SKIP
        'ticket_triage@2 on ticket_triage@1 with openai/gpt-4o-mini: 770 cases, ...'
    """
    from promptgov.eval._engine import evalset_for
    from promptgov.model._base import Usage
    from promptgov.model._cost import is_priced, price_usd
    from promptgov.model._embedding import token_count
    from promptgov.workspace import Workspace
    from promptgov.workspace._policy import load_policy

    ws = Workspace.of(workspace)
    pv = ws.prompt(ref)
    es = evalset_for(ws, pv, evalset)
    model_id = model or pv.model.id
    fixed_tokens, tokens = None, 0
    for case in es.cases:
        msgs = pv.render(case.input)
        if fixed_tokens is None:
            fixed_tokens = sum(token_count(m["content"]) + 3 for m in msgs[:pv.prefix_len]) + 3
        tokens += fixed_tokens + sum(token_count(m["content"]) + 3
                                     for m in msgs[pv.prefix_len:])
    completion = pv.model.max_tokens * len(es.cases)
    prices = load_policy(ws.root).prices
    cost = price_usd(model_id, Usage(tokens, completion), prices) \
        if is_priced(model_id, prices) else None
    return Estimate(pv.ref, es.ref, model_id, len(es.cases), tokens, completion, cost)
