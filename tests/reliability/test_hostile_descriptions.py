"""Hostile VM descriptions: arbitrary JSON values, near misses of the real fields, and
arbitrary text where config.json should be. Whatever comes, the model answers with a
ConfigError whose every problem has a message and a hint (never another exception), and
whatever it accepts round-trips exactly. 300 cases each in `make test`, 10,000 in the
full campaign."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from tests.reliability import campaign
from vmdesk.core.config import VMConfig, from_dict, from_json, to_dict
from vmdesk.core.errors import ConfigError

EXAMPLES = campaign.cases(quick=300, full=10_000)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from([*VMConfig.model_fields, "kind", "mac", "file", "tag"])
NEAR_MISS = st.dictionaries(FIELDS, JSON, max_size=8).map(lambda d: {"name": "vm", **d})
TEXT = (
    st.text(max_size=200)
    | JSON.map(repr)
    | st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace"))
)


def _refused_well(exc: ConfigError) -> bool:
    return bool(exc.problems) and all(p.message and p.hint for p in exc.problems)


def _campaign(operation: str, body: Any) -> None:
    """Run the hypothesis test ``body`` (which appends to the list it is given) with the
    campaign's size, and record how many cases it tried."""
    tried: list[int] = []
    started = time.monotonic()
    body(tried)
    result = campaign.Result(test="hostile input: VM descriptions", operation=operation,
                             cases=len(tried), seconds=time.monotonic() - started)  # fmt: skip
    result.record()


def test_arbitrary_json_only_ever_raises_config_error() -> None:
    @seed(campaign.SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(st.one_of(JSON, st.dictionaries(st.text(max_size=12), JSON), NEAR_MISS))
    def body(tried: list[int], data: Any) -> None:
        tried.append(1)
        try:
            config = from_dict(data)
        except ConfigError as exc:
            assert _refused_well(exc), exc.problems
        else:
            assert from_dict(to_dict(config)) == config  # whatever is accepted round-trips

    _campaign("JSON values and near misses", body)


def test_arbitrary_text_as_config_json_only_ever_raises_config_error() -> None:
    @seed(campaign.SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(TEXT)
    def body(tried: list[int], text: str) -> None:
        tried.append(1)
        try:
            from_json(text)
        except ConfigError as exc:
            assert _refused_well(exc) or exc.hint, exc

    _campaign("config.json text", body)
