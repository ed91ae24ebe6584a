"""``{vault: key}``: a reference to a secret held in the estate's ansible-vault file, in a
module of its own so that every model module of the estate (``model``, ``notifications``)
can import it without importing another in a circle."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from orchestrator.estate.schema import STRICT


class Strict(BaseModel):
    model_config = STRICT


class SecretRef(Strict):
    """A reference to a secret held in the ansible-vault file: ``{vault: key}``."""

    vault: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

    @model_validator(mode="before")
    @classmethod
    def _no_plain_text(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            raise ValueError(
                "a secret is written here in plain text; put it in the vault file and "
                "write {vault: <key>} instead"
            )
        return value
