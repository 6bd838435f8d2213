"""State deltas: a batch's recorded change, replayed on the state it started from, is exactly the state it ended with.

The DynamoDB store writes a delta per batch instead of the whole state; these properties are what makes that safe:
the replay equals the live state, equals what the whole-state path (encode, decode) held, and the recording step
behaves exactly like the engine's ``correlate_host``.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import pytest
from builders import HOUR, MINUTE, shifted
from hypothesis import given, settings
from hypothesis import strategies as st
from test_order_and_windows import STREAM

from chainwatch.engine.codec import (
    StateDecodeError,
    StateDelta,
    apply_delta,
    dumps_delta,
    dumps_state,
    loads_delta,
    loads_state,
)
from chainwatch.engine.engine import correlate_host
from chainwatch.engine.hoststate import HostState
from chainwatch.events import AnyEvent
from chainwatch.pipeline.correlate import correlate_recording
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_path

POLICY = load_policy()
ROOT = Path(__file__).resolve().parents[3]
#: The stream twice more, an hour and three hours later: the window moves, so batches evict what the first held.
LONG = [*STREAM, *(shifted(e, HOUR + 7 * MINUTE) for e in STREAM), *(shifted(e, 3 * HOUR) for e in STREAM)]


def _replayed(state: HostState, delta: StateDelta) -> HostState:
    """``state`` (as stored: encoded and decoded) with ``delta`` (as stored) applied."""
    replica = loads_state(dumps_state(state)[0])
    apply_delta(replica, loads_delta(dumps_delta(delta)))
    return replica


def correlate_and_keep(state: HostState, batch: list[AnyEvent]) -> HostState:
    correlate_host(state, batch, POLICY)
    return state


def _batches(events: list[AnyEvent], cuts: list[int]) -> list[list[AnyEvent]]:
    bounds = [0, *sorted({c % (len(events) + 1) for c in cuts}), len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=60, deadline=None)
@given(permutation=st.permutations(range(len(LONG))), cuts=st.lists(st.integers(0, 10_000), max_size=12),
       redeliver=st.booleans())
def test_delta_any_order_and_batching_replay_equals_live_state_and_whole_state_path(
        permutation: list[int], cuts: list[int], redeliver: bool) -> None:
    order = [LONG[i] for i in permutation]
    batches = _batches(order, cuts)
    if redeliver:  # at-least-once: every other batch comes twice
        batches = [b for i, batch in enumerate(batches) for b in ([batch, batch] if i % 2 else [batch])]
    host = order[0].host
    live = HostState(host)  # correlate_recording's state, never stored
    engine_side = HostState(host)  # the engine's own correlate_host on the same batches
    old_path = HostState(host)  # the previous layout: the whole state encoded and decoded after every batch
    stored = HostState(host)  # the new layout: a base (encoded, decoded) with every delta (encoded, decoded)
    for batch in batches:
        result, delta = correlate_recording(live, batch, POLICY)
        expected = correlate_host(engine_side, batch, POLICY)
        assert (result.admitted, result.changed, result.withdrawn) == (
            expected.admitted, expected.changed, expected.withdrawn)
        assert live == engine_side
        old_path = loads_state(dumps_state(correlate_and_keep(old_path, batch))[0])
        if not result.admitted:
            assert delta.admitted == []  # a redelivery: nothing to write
            continue
        stored = _replayed(stored, delta)
        assert stored == live
        assert stored == old_path
    assert live.horizon_ns > 0  # the stream is long enough that batches evicted


def test_state_codec_first_write_slot_evicted_latest_kept_round_trips_unchanged() -> None:
    state = HostState(STREAM[0].host)
    correlate_host(state, STREAM, POLICY)
    held = [key for key in state.file_slots if key.endswith("|l")]
    assert held
    del state.file_slots[held[0][:-1] + "f"]  # what evict_before leaves when only the first write aged out
    assert loads_state(dumps_state(state)[0]) == state


def test_delta_every_sample_and_fixture_event_round_trips(shared_fixtures: Path) -> None:
    paths = [p for p in sorted((ROOT / "events").rglob("*")) if p.is_file()]
    paths += [p for p in sorted(shared_fixtures.rglob("*"))
              if p.is_file() and p.suffix in (".json", ".jsonl", ".ndjson")]
    events: list[AnyEvent] = []
    for path in paths:
        events.extend(Normalizer(on_reject=lambda _: None).run(read_path(path), "mac-01"))
    assert len(events) > 100
    decoded = loads_delta(dumps_delta(StateDelta([(e, None) for e in events], 1, 2, {}, [], None)))
    mismatched = [(e, d) for (e, _), (d, _) in zip([(e, None) for e in events], decoded.admitted, strict=True)
                  if e != d]
    assert mismatched == []


def test_delta_role_of_exec_kept_through_encoding() -> None:
    state = HostState(STREAM[0].host)
    _, delta = correlate_recording(state, STREAM, POLICY)
    roles = [role for _, role in delta.admitted if role is not None]
    assert roles  # the stream's apps and interpreters have roles
    assert [r for _, r in loads_delta(dumps_delta(delta)).admitted if r is not None] == roles


@pytest.mark.parametrize("blob", [b"not zlib", b"x\x9c\x03\x00\x00\x00\x00\x01",
                                  zlib.compress(b'{"v": 99}'),
                                  zlib.compress(b'{"v": 1, "ev": [{"_t": "Nope"}]}'),
                                  zlib.compress(b'{"v": 1, "ev": [], "wm": "x"}')])
def test_loads_delta_corrupt_or_foreign_blob_raises_state_decode_error(blob: bytes) -> None:
    with pytest.raises(StateDecodeError):
        loads_delta(blob)
