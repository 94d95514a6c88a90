"""The wire shape of a personalization decision, shared by the collector and ``client.decide()``.

A decision is computed by the collector only for subjects who granted the ``personalization``
purpose; everyone else gets the same shape with ``personalization="not_consented"`` and empty
fields. ``"unavailable"`` means the profile store could not be reached (for example a Redis
outage): the answer is empty, ingestion goes on, and the client may ask again later.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Decision", "NextBestAction", "Personalization", "Recommendation"]

Personalization = Literal["granted", "not_consented", "unavailable"]

# extra="ignore": an older SDK reads the answers of a newer collector, which may add fields.
_FROZEN = ConfigDict(frozen=True, extra="ignore")


class NextBestAction(BaseModel):
    """What to do next for the subject, and why, in words a person can check."""

    model_config = _FROZEN

    action: str = Field(description="The action id, e.g. ``cart_recovery_offer``.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the action, incl. experiment variant."
    )
    reason: str = Field(description="Why this action was chosen, human-readable.")


class Recommendation(BaseModel):
    """One recommended product and where the recommendation came from."""

    model_config = _FROZEN

    product_id: str
    score: float = Field(description="Higher is better; comparable only within one source.")
    source: Literal["co_occurrence", "category", "popular"]


class Decision(BaseModel):
    """Segments, journey stage, next best action and recommendations for one subject."""

    model_config = _FROZEN

    subject: str
    personalization: Personalization
    segments: list[str] = Field(default_factory=list)
    stage: str | None = None
    next_best_action: NextBestAction | None = None
    recommendations: list[Recommendation] = Field(default_factory=list)
    rules_fired: list[str] = Field(
        default_factory=list, description="Ids of every rule whose condition held."
    )

    @classmethod
    def empty(cls, subject: str, personalization: Personalization) -> Decision:
        """The answer for a subject without a computed decision."""
        return cls(subject=subject, personalization=personalization)
