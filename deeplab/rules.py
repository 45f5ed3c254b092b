"""Rules a value must satisfy, checked from a table: one style for the
model's arguments (``deeplab.model_args.ModelArgs``) and every section of
the experiment config (``deeplab.config``).

A table maps a field's name to a ``Rule``: a predicate and the rule in
words. ``check`` raises ``RuleError`` naming the first field that breaks
its rule, the rule and the value received, e.g.
``config.optimizer.name must be one of ('sgd', 'adamw'), got 'adam'``.

Example::

  table = {"steps": rules.at_least(1), "name": rules.one_of(("a", "b"))}
  rules.check({"steps": 0, "name": "a"}, table, "config.train")
  # RuleError: config.train.steps must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple


class RuleError(ValueError):
  """A value broke its rule.

  Attributes:
    key: the value's name (``config.train.steps``, or an argument's name).
    rule: what the value must be.
    value: the value received.
  """

  def __init__(self, key: str, rule: str, value):
    super().__init__(f"{key} must be {rule}, got {value!r}")
    self.key, self.rule, self.value = key, rule, value


@dataclasses.dataclass(frozen=True)
class Rule:
  """What a value must be: ``check(value)`` is true; ``words`` says so in
  the error message (``key must be <words>, got <value>``)."""

  check: Callable[[Any], bool]
  words: str

  def holds(self, value) -> bool:
    try:
      return bool(self.check(value))
    except TypeError:  # A value of another type ("8" for 8) breaks the rule.
      return False


# A section's rules: {field name: Rule}.
Table = Mapping[str, Rule]


def first_broken(values: Mapping[str, Any],
                 table: Table) -> Optional[Tuple[str, Rule, Any]]:
  """``(name, rule, value)`` of the first field of ``table`` (in its order)
  whose value in ``values`` breaks its rule, or None."""
  for name, rule in table.items():
    if not rule.holds(values[name]):
      return name, rule, values[name]
  return None


def check(values: Mapping[str, Any], table: Table, prefix: str) -> None:
  """Raises ``RuleError`` naming ``prefix.<field>`` for the first field of
  ``table`` whose value in ``values`` breaks its rule."""
  broken = first_broken(values, table)
  if broken:
    name, rule, value = broken
    raise RuleError(f"{prefix}.{name}", rule.words, value)


def is_int(value) -> bool:
  """An integer, not a bool."""
  return isinstance(value, int) and not isinstance(value, bool)


def one_of(choices: Sequence, words: str = "") -> Rule:
  """The value is one of ``choices`` (``words`` replaces the listing)."""
  return Rule(lambda v: v in choices, words or f"one of {choices}")


def at_least(bound, note: str = "") -> Rule:
  """``value >= bound``; ``note`` follows the rule (``(0: no limit)``)."""
  return Rule(lambda v: v >= bound, f">= {bound}{' ' + note if note else ''}")


def above(bound) -> Rule:
  """``value > bound``."""
  return Rule(lambda v: v > bound, f"> {bound}")


def in_interval(low, high, brackets: str = "[]") -> Rule:
  """The value lies between ``low`` and ``high``; ``brackets`` says which
  ends are included: ``"[]"``, ``"(]"``, ``"[)"`` or ``"()"``."""
  if brackets not in ("[]", "(]", "[)", "()"):
    raise ValueError(f"brackets must be one of '[]', '(]', '[)', '()', got {brackets!r}")
  above_low = (lambda v: v >= low) if brackets[0] == "[" else (lambda v: v > low)
  below_high = (lambda v: v <= high) if brackets[1] == "]" else (lambda v: v < high)
  return Rule(lambda v: above_low(v) and below_high(v),
              f"in {brackets[0]}{low}, {high}{brackets[1]}")
