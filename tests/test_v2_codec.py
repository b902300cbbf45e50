"""app/v2/codec.py: Triton's BYTES elements read at once in numpy, or element by element, always exactly."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.features import CATEGORY_SETS, NUMERIC, category_codes
from app.v2.codec import binary_words, decode, split_bytes
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


ISLAND_LIKE = ["Biscoe", "Dream", "Torgersen", "biscoe", "Biscoa", "Dreams", "Torgerse", "", "Male", "Biscoe\0"]


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.sampled_from(ISLAND_LIKE) | st.text(max_size=12), min_size=1))
def test_binary_words_have_codes_exactly_when_every_word_is_a_category(words: list[str]) -> None:
    found, codes = binary_words("island", elements(words), len(words))
    assert found == words
    if set(words) <= CATEGORY_SETS["island"]:
        assert codes is not None and codes.tolist() == category_codes("island", words).tolist()
    else:
        assert codes is None  # the strings' way checks them, and says what is wrong


def test_a_binary_sex_in_another_case_takes_the_strings_way_and_is_understood() -> None:
    words = ["MALE", "female"] * 20
    tensors = [("island", ["Biscoe"] * 40), ("sex", words)]
    numbers = [(name, [1.0] * 40) for name in NUMERIC]
    header = {
        "inputs": [
            *({"name": name, "shape": [40], "datatype": "BYTES", "parameters": {"binary_data_size": len(elements(v))}}
              for name, v in tensors),
            *({"name": name, "shape": [40], "datatype": "FP64", "parameters": {"binary_data_size": 320}}
              for name, _ in numbers),
        ]
    }  # fmt: skip
    raw = json.dumps(header).encode()
    body = (
        raw + b"".join(bytes(elements(v)) for _, v in tensors) + b"".join(struct.pack("<40d", *v) for _, v in numbers)
    )
    batch = decode(body, str(len(raw)), 1000).batch
    assert batch.categorical["sex"] == ["Male", "Female"] * 20
    assert batch.codes["sex"].tolist() == category_codes("sex", ["Male", "Female"] * 20).tolist()


@pytest.mark.parametrize("header_length", ["\u00b2", "1\u00b9", "-1", "", "0x10", "\u0663"])
def test_a_header_length_that_is_not_ascii_digits_is_refused(header_length: str) -> None:
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        decode(b'{"inputs": []}', header_length, 10)
