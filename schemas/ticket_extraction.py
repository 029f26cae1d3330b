"""Output contract of the ticket extraction workflow (NLU++ banking ontology).

Every slot is present and nullable: "not mentioned" is an explicit null, and scoring counts it.
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Intent = Literal[
    "account",
    "acknowledge",
    "affirm",
    "appointment",
    "arrival",
    "balance",
    "business",
    "cancel_close_leave_freeze",
    "card",
    "change",
    "cheque",
    "contactless",
    "credit",
    "current",
    "debit",
    "deny",
    "direct_debit",
    "dont_know",
    "end_call",
    "existing",
    "fees_interests",
    "greet",
    "handoff",
    "how",
    "how_long",
    "how_much",
    "international",
    "less_lower_before",
    "limits",
    "loan",
    "lost_stolen",
    "make_open_apply_setup_get_activate",
    "more_higher_after",
    "mortgage",
    "new",
    "overdraft",
    "pin",
    "refund",
    "repeat",
    "request_info",
    "savings",
    "standing_order",
    "thank",
    "transfer_payment_deposit",
    "when",
    "why",
    "withdrawal",
    "wrong_notworking_notshowing",
]


class TicketExtraction(BaseModel):
    """The intents of a banking utterance and the values it mentions."""

    schema_id: ClassVar[str] = "ticket_extraction@1"
    model_config = ConfigDict(extra="forbid")

    intents: list[Intent] = Field(description="Every intent the utterance expresses.")
    amount: float | None = Field(description="Amount of money mentioned, as a number.")
    date: str | None = Field(description="Specific date mentioned, ISO YYYY-MM-DD (today is 2022-03-15).")
    time: str | None = Field(description="Specific time of day mentioned, 24h HH:MM (now is 09:00).")
    company: str | None = Field(description="Name of a company or merchant mentioned.")
    number: int | None = Field(description="A number mentioned without other context.")
    person: str | None = Field(description="Name of a person mentioned.")
    shopping_category: str | None = Field(description="Category of an expense mentioned.")
