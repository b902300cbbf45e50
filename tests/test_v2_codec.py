"""app/v2/codec.py: Triton's BYTES elements read at once in numpy, or element by element, always exactly."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.v2.codec import decode, split_bytes
from app.v2.errors import BadRequest


def elements(words: list[str]) -> memoryview:
    return memoryview(b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words))


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.text(max_size=300) | st.sampled_from(["Biscoe", "Dream", "Male", "\0", "a\0", ""])))
def test_split_bytes_gives_back_any_words(words: list[str]) -> None:
    assert split_bytes("island", elements(words), len(words)) == words


@pytest.mark.parametrize(
    "words", [["Torgersen"] * 1000, ["Male", "Female"] * 500, ["x" * 255, "y"], ["x" * 256, "y"], ["a\0", "b"]]
)
def test_split_bytes_short_and_long_words(words: list[str]) -> None:
    assert split_bytes("sex", elements(words), len(words)) == words


@given(words=st.lists(st.sampled_from(["Biscoe", "Dream"]), min_size=1), cut=st.integers(min_value=1, max_value=8))
def test_split_bytes_refuses_truncated_data(words: list[str], cut: int) -> None:
    data = elements(words)
    with pytest.raises(BadRequest):
        split_bytes("island", data[: max(len(data) - cut, 0)], len(words))


@given(words=st.lists(st.sampled_from(["Biscoe", "Dream"]), min_size=1), extra=st.sampled_from([-1, 1]))
def test_split_bytes_refuses_a_wrong_count(words: list[str], extra: int) -> None:
    with pytest.raises(BadRequest):
        split_bytes("island", elements(words), len(words) + extra)


@pytest.mark.parametrize("header_length", ["\u00b2", "1\u00b9", "-1", "", "0x10", "\u0663"])
def test_a_header_length_that_is_not_ascii_digits_is_refused(header_length: str) -> None:
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        decode(b'{"inputs": []}', header_length, 10)
