"""Labelbox classifications to frame labels: (label name, value, float value)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medvid.labels.labelbox.common import _FALSE_ANSWERS, _TRUE_ANSWERS, _number
from medvid.labels.schema import (
    LabelSchema,
)

# --------------------------------------------------------------------------------------------
# Classifications -> (label name, value, float value)


def _answer_name(answer: Any) -> tuple[str | None, str | None]:
    """(display name, value slug) of an answer object of either export format."""
    if not isinstance(answer, Mapping):
        return None, None
    name = answer.get("name", answer.get("title"))
    return (str(name) if name is not None else None), (
        str(answer["value"]) if answer.get("value") is not None else None
    )


def _classification_answers(
    cls: Mapping[str, Any],
) -> tuple[str, str | None, list[Mapping[str, Any]], str | None, list[Any]]:
    """Normalise a classification of either format.

    Returns (question name, question slug, chosen answers (radio: one, checklist: many),
    text answer or None, nested classifications found under the answers).
    """
    question = str(cls.get("name", cls.get("title", "")))
    slug = str(cls["value"]) if cls.get("value") is not None else None
    answers: list[Mapping[str, Any]] = []
    text: str | None = None
    if "radio_answer" in cls:
        answers = [cls["radio_answer"]]
    elif "checklist_answers" in cls:
        answers = list(cls["checklist_answers"] or [])
    elif "text_answer" in cls:
        text = str((cls["text_answer"] or {}).get("content", ""))
    elif "answers" in cls:  # v1 checklist
        answers = list(cls["answers"] or [])
    elif "answer" in cls:  # v1 radio or text
        if isinstance(cls["answer"], Mapping):
            answers = [cls["answer"]]
        else:
            text = str(cls["answer"])
    nested: list[Any] = []
    for answer in answers:
        if isinstance(answer, Mapping):
            nested.extend(answer.get("classifications") or [])
    return question, slug, answers, text, nested


@dataclass
class _Counter:
    unknown_labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def unknown(self, name: str) -> None:
        self.unknown_labels[name] = self.unknown_labels.get(name, 0) + 1


def _resolve_name(
    name: str | None, slug: str | None, schema: LabelSchema | None, counter: _Counter
) -> str | None:
    if schema is None:
        return name or slug
    for candidate in (name, slug):
        if candidate and candidate in schema:
            return candidate
    counter.unknown(name or slug or "")
    return None


def _classification_labels(
    cls: Mapping[str, Any], schema: LabelSchema | None, counter: _Counter
) -> list[tuple[str, bool, float | None]]:
    """Frame labels of one classification (rules in the module docstring)."""
    question, slug, answers, text, nested = _classification_answers(cls)
    out: list[tuple[str, bool, float | None]] = []
    is_radio = "radio_answer" in cls or isinstance(cls.get("answer"), Mapping)
    for answer in answers:
        name, value_slug = _answer_name(answer)
        word = (name or value_slug or "").strip().lower()
        if is_radio and word in _TRUE_ANSWERS | _FALSE_ANSWERS:
            resolved = _resolve_name(question, slug, schema, counter)
            if resolved:
                out.append((resolved, word in _TRUE_ANSWERS, None))
            continue
        resolved = _resolve_name(name, value_slug, schema, counter)
        if resolved:
            out.append((resolved, True, None))
    if text is not None:
        number = _number(text.strip(), math.nan)
        if math.isfinite(number):
            resolved = _resolve_name(question, slug, schema, counter)
            if resolved:
                out.append((resolved, True, number))
        else:
            counter.skip("text answer")
    for child in nested:
        if isinstance(child, Mapping):
            out.extend(_classification_labels(child, schema, counter))
    return out


def _nested_summary(classifications: Iterable[Any]) -> str:
    """JSON ``[{"question", "answer"}]`` of classifications nested on an object."""
    summary: list[dict[str, Any]] = []
    for cls in classifications or []:
        if not isinstance(cls, Mapping):
            continue
        question, _, answers, text, nested = _classification_answers(cls)
        if text is not None:
            summary.append({"question": question, "answer": text})
        for answer in answers:
            summary.append({"question": question, "answer": _answer_name(answer)[0]})
        if nested:
            summary.extend(json.loads(_nested_summary(nested)))
    return json.dumps(summary, sort_keys=True)
