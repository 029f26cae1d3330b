"""``pg.estimate`` and ``promptgov eval --dry-run``: what a run would send and cost, before
anything is sent."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import promptgov as pg
from promptgov.cli._app import app

runner = CliRunner()


def test_dry_run_prints_cases_tokens_and_cost_and_sends_nothing(workspace_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # nothing is sent, so no key is needed
    r = runner.invoke(app, ["eval", "ticket_triage@2", "--model", "openai/gpt-4o-mini",
                            "--dry-run", "--workspace", str(workspace_dir)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ticket_triage@2 on ticket_triage@1 with openai/gpt-4o-mini: "
                               "770 cases, ")
    assert "per case" in r.output and "estimated at most $" in r.output
    assert not (workspace_dir / ".promptgov").exists()  # no cache, no MLflow run
    r = runner.invoke(app, ["eval", "ticket_triage@2", "--model", "openai/gpt-4o-mini",
                            "--dry-run", "--json", "--workspace", str(workspace_dir)])
    e = json.loads(r.output)
    assert e["cases"] == 770 and e["prompt_tokens"] > 770 * 30_000  # 770 demos a request
    assert 2.0 < e["cost_usd"] < 6.0  # gpt-4o-mini: $0.15 per 1M input, $0.60 per 1M output


def test_an_unpriced_model_is_named_not_priced_at_zero(workspace_dir):
    e = pg.estimate("reply_draft@1", model="someprovider/unknown-model", workspace=workspace_dir)
    assert e.cost_usd is None and "not in the price map" in e.summary()


def test_estimated_prompt_tokens_are_what_the_run_counts(workspace):
    """The estimate counts tokens as local/knn reports them (cl100k_base and OpenAI's framing),
    so on the offline model it is exact, case by case summed."""
    r = pg.evaluate("reply_draft@1", model="local/knn", workspace=workspace, track=False,
                    cache=False)
    e = pg.estimate("reply_draft@1", model="local/knn", workspace=workspace)
    assert e.cases == len(r.records) == 30
    assert e.prompt_tokens == sum(rec["prompt_tokens"] for rec in r.records)
    assert e.cost_usd == 0.0
