"""Prompt pieces of the demo's ranked-choice tasks (``demo/tasks/shop_rc``) that Jinja
cannot express: an entity-typing document read the way the shop's corpus states entity
types, the title followed by ``TYPE: ENTITY`` lines (``demo/shop.py``)."""

from __future__ import annotations


def _title_and_entity(doc: dict) -> tuple[str, str]:
    """An ``ecom_icl_ent`` document's text is ``TITLE\\n实体：ENTITY``."""
    title, _, asked = doc["text"].partition("\n")
    return title, asked.partition("：")[2]


def title_line(doc: dict) -> str:
    """The context: the product title and the line break the corpus puts after it."""
    return _title_and_entity(doc)[0] + "\n"


def entity_lines(doc: dict) -> list[str]:
    """One choice per type in the document's label set, ``TYPE: ENTITY``, in the label
    set's order (so ``tasks.choice.gold_index`` names the gold choice)."""
    entity = _title_and_entity(doc)[1]
    return [f"{kind}: {entity}" for kind in doc["label_set"]]
