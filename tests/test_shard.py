"""`--shard K/N`: every inventory is split exactly, the same way every time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotate.models import Row
from rotate.planner import Shard
from rotate.registry import kind_names, kind_spec

PROTOCOLS = {k: spec.protocols for k in kind_names() if (spec := kind_spec(k))}

rows_strategy = st.lists(
    st.builds(
        lambda endpoint, kind, target, port, n: Row(
            line=2,
            endpoint=endpoint,
            kind=kind,
            target=target,
            username="u",
            protocol=PROTOCOLS[kind][n % len(PROTOCOLS[kind])],
            port=port if kind == "computer" else None,
        ),
        st.sampled_from(["office-mac", "gw1", "branch"]),
        st.sampled_from(kind_names()),
        st.text(min_size=1, max_size=12),
        st.none() | st.integers(1, 65535),
        st.integers(0, 5),
    ),
    max_size=60,
    unique_by=lambda r: r.key,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows=rows_strategy, count=st.integers(1, 8))
def test_shards_partition_every_inventory_exactly(rows: list[Row], count: int) -> None:
    parts = [[r for r in rows if Shard(k, count).holds(r)] for k in range(count)]
    # Every row is in exactly one shard...
    assert sorted((r.key for p in parts for r in p), key=repr) == sorted(
        (r.key for r in rows), key=repr
    )
    # ...and asking again (another host, another day) gives the same answer.
    again = [[r for r in rows if Shard(k, count).holds(r)] for k in range(count)]
    assert parts == again


def test_shards_spread_a_real_inventory() -> None:
    rows = [
        Row(line=i, endpoint="e", kind="computer", target=str(i), username="u", protocol="RDP")
        for i in range(4000)
    ]
    sizes = [sum(Shard(k, 4).holds(r) for r in rows) for k in range(4)]
    assert sum(sizes) == 4000
    assert min(sizes) > 900  # roughly a quarter each


@pytest.mark.parametrize("text", ["4/4", "-1/3", "a/b", "3", "1/0"])
def test_bad_shard_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="K"):
        Shard.parse(text)
