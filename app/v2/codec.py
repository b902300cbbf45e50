"""V2 tensors to the core's Batch and back: JSON data and Triton's binary tensor data, column by column in numpy.

A request is parsed once: its JSON by pydantic-core (Rust), its binary tensors as numpy views of the body. The
measurements go straight into the Batch's float matrix; the only objects made per record are the JSON parser's
and the categorical strings the Batch holds. Answers are written by orjson, the probabilities straight from their
array; binary outputs are the arrays' bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from app.errors import TooManyRecords
from app.features import CATEGORICAL, CATEGORIES, FEATURES, NUMERIC, UNKNOWN, Batch
from app.predictors import Prediction
from app.registry import LoadedModel
from app.v2.errors import BadRequest
from app.v2.types import NUMERIC_DATATYPES, InferenceRequest, RequestInput, RequestOutput

# Triton's binary tensor data extension: the JSON header's length, when binary tensors follow it.
HEADER_LENGTH = "inference-header-content-length"
BINARY_CONTENT_TYPE = "application/octet-stream"
# Binary tensors are little-endian, without padding.
BINARY_DTYPES = {
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
}  # fmt: skip
PREDICT, PREDICT_PROBA = "predict", "predict_proba"
REQUEST = TypeAdapter(InferenceRequest)
# A BYTES element's length prefix.
PREFIX = 4
# Each category as the bytes a BYTES element holds, and as the strings a code stands for.
CATEGORY_BYTES = {name: [word.encode() for word in words] for name, words in CATEGORIES.items()}
CATEGORY_WORDS = {name: np.asarray(words, dtype=object) for name, words in CATEGORIES.items()}


@dataclass(frozen=True)
class Decoded:
    """A parsed infer request: its records, its id, and which outputs to send, each binary or JSON."""

    batch: Batch
    id: str | None
    outputs: dict[str, bool] | None  # name -> binary; None: the default outputs
    binary_output: bool  # the request-wide default for binary outputs


def decode(body: bytes, header_length: str | None, max_records: int) -> Decoded:
    """An infer request's body (with the Inference-Header-Content-Length header's value, if any) as a Batch."""
    header, binary = _split(body, header_length)
    request = _parse(header)
    columns = _Columns(binary, max_records)
    for tensor in request["inputs"]:
        columns.add(tensor)
    columns.check_consumed()
    return Decoded(
        Batch.from_columns(columns.categorical, columns.numeric, columns.codes),
        request.get("id"),
        _requested_outputs(request.get("outputs")),
        (request.get("parameters") or {}).get("binary_data_output") is True,
    )


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    # isdigit alone would pass "²", which int() refuses: only ASCII digits are a length.
    length = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 < length <= len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the body's "
            f"{len(body)} bytes."
        )
    return body[:length], memoryview(body)[length:]


def _parse(header: bytes) -> InferenceRequest:
    try:
        return REQUEST.validate_json(header)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"The inference request is invalid: {where + ': ' if where else ''}{first['msg']}.") from None


def _requested_outputs(requested: list[RequestOutput] | None) -> dict[str, bool] | None:
    if requested is None:
        return None
    outputs: dict[str, bool] = {
        output["name"]: (output.get("parameters") or {}).get("binary_data") is True for output in requested
    }
    if len(outputs) != len(requested):
        raise BadRequest("An output is asked for twice in `outputs`.")
    return outputs


class _Columns:
    """The input tensors as the core's columns, with the binary data they point into consumed in order."""

    def __init__(self, binary: memoryview, max_records: int) -> None:
        self.binary = binary
        self.offset = 0
        self.max_records = max_records
        self.categorical: dict[str, Sequence[str]] = {}
        self.numeric: dict[str, np.ndarray | list[float]] = {}
        self.codes: dict[str, np.ndarray] = {}  # a binary word column's codes, when every word is a category

    def add(self, tensor: RequestInput) -> None:
        name, datatype = tensor["name"], tensor["datatype"]
        data: Any = tensor.get("data")  # its type follows the datatype, checked against the name below
        if name in self.categorical or name in self.numeric:
            raise BadRequest(f"Input {name!r} is given twice.")
        count = self._records(name, tensor["shape"])
        parameters = tensor.get("parameters")
        raw = None if not parameters or "binary_data_size" not in parameters else self._binary(tensor, data)
        if name in CATEGORICAL:
            if datatype != "BYTES":
                raise BadRequest(f"Input {name!r} holds words: its datatype must be BYTES, not {datatype}.")
            if raw is None:
                self.categorical[name] = _words(name, count, data)
            else:
                self.categorical[name], codes = binary_words(name, raw, count)
                if codes is not None:
                    self.codes[name] = codes
        elif name in NUMERIC:
            if datatype == "BYTES":
                raise BadRequest(
                    f"Input {name!r} holds measurements: its datatype must be one of {', '.join(NUMERIC_DATATYPES)}."
                )
            self.numeric[name] = (
                _numbers(name, count, data) if raw is None else _binary_numbers(name, count, datatype, raw)
            )
        else:
            raise BadRequest(f"Unknown input {name[:64]!r}; the inputs are {', '.join(FEATURES)}.")

    def check_consumed(self) -> None:
        if self.offset != len(self.binary):
            raise BadRequest(
                f"The body holds {len(self.binary) - self.offset} bytes of binary data after the last input's."
            )

    def _records(self, name: str, shape: list[int]) -> int:
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise BadRequest(f"Input {name[:64]!r} has shape {shape}; a column is [N] or [N, 1].")
        if shape[0] > self.max_records:
            raise TooManyRecords.of(shape[0], self.max_records)
        return shape[0]

    def _binary(self, tensor: RequestInput, data: Any) -> memoryview:
        size = (tensor.get("parameters") or {})["binary_data_size"]
        name = tensor["name"][:64]
        if data is not None:
            raise BadRequest(f"Input {name!r} has both `data` and a `binary_data_size` parameter.")
        remaining = len(self.binary) - self.offset
        if type(size) is not int or not 0 <= size <= remaining:
            raise BadRequest(
                f"Input {name!r} has binary_data_size {str(size)[:20]}, but {remaining} bytes of binary data remain."
            )
        chunk = self.binary[self.offset : self.offset + size]
        self.offset += size
        return chunk


def _numbers(name: str, count: int, data: list[float] | list[list[float]] | None) -> np.ndarray | list[float]:
    if data is None:
        raise BadRequest(f"Input {name!r} has neither `data` nor a `binary_data_size` parameter.")
    if not data or type(data[0]) is not list:
        # Flat, and floats already (the schema said so): the Batch copies them straight into its matrix.
        flat = cast("list[float]", data)
        _check_count(name, count, len(flat))
        return flat
    try:
        values = np.asarray(data, dtype=np.float64)
    except ValueError:
        raise BadRequest(f"Input {name!r} is ragged: its nested lists differ in length.") from None
    _check_count(name, count, values.size)
    return values.reshape(-1)


def _binary_numbers(name: str, count: int, datatype: str, raw: memoryview) -> np.ndarray:
    dtype = np.dtype(BINARY_DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"Input {name!r} has {len(raw)} bytes of binary data; {count} {datatype} values take "
            f"{count * dtype.itemsize}."
        )
    return np.frombuffer(raw, dtype=dtype).astype(np.float64)


def _words(name: str, count: int, data: list[str] | list[list[str]] | None) -> Sequence[str]:
    if data is None:
        raise BadRequest(f"Input {name!r} has neither `data` nor a `binary_data_size` parameter.")
    # [N, 1] sent nested: [["Biscoe"], ["Dream"]]; the schema allows only lists of strings inside.
    values = list(itertools.chain.from_iterable(data)) if data and type(data[0]) is list else cast("list[str]", data)
    _check_count(name, count, len(values))
    return values


def _check_count(name: str, count: int, size: int) -> None:
    if size != count:
        raise BadRequest(f"Input {name!r} has shape for {count} values but holds {size}.")


def binary_words(name: str, raw: memoryview, count: int) -> tuple[list[str], np.ndarray | None]:
    """Triton's BYTES elements as strings; with their codes when every one is a category of `name` as written.

    Then the codes come from comparing bytes, a few numpy calls per category, and the strings from the codes:
    no element is decoded one by one. Any other word (another case, a typo) takes the strings' way, whose checks
    say what is wrong with it.
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    starts = _short_element_starts(data, count)
    codes = None if starts is None else _category_codes(name, data, starts)
    if codes is None:
        return split_bytes(name, raw, count, data, starts), None
    return CATEGORY_WORDS[name][codes].tolist(), codes


def _category_codes(name: str, data: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Each element's category code, or None when one element is no category (short elements only)."""
    lengths = data[starts]  # the prefix's first byte: short elements' length
    codes = np.full(len(starts), UNKNOWN, dtype=np.uint8)
    for code, word in enumerate(CATEGORY_BYTES[name]):
        candidates = np.flatnonzero(lengths == len(word))
        if len(candidates):
            # Each candidate's bytes as one fixed-width string, compared at once with the word's.
            windows = np.lib.stride_tricks.sliding_window_view(data, len(word))  # a view: nothing copied
            found = windows[starts[candidates] + PREFIX].view(f"S{len(word)}")[:, 0] == word
            codes[candidates[found]] = code
    return None if (codes == UNKNOWN).any() else codes


def split_bytes(
    name: str, raw: memoryview, count: int, data: np.ndarray | None = None, starts: np.ndarray | None = None
) -> list[str]:
    """Triton's BYTES elements, each a 4-byte little-endian length and then its UTF-8 bytes, as strings (data and
    starts: the bytes as an array and the elements' starts, when the caller found them)."""
    if data is None:
        data = np.frombuffer(raw, dtype=np.uint8)
        starts = _short_element_starts(data, count)
    if starts is None:
        return _walk_elements(name, bytes(raw), count)
    # No element holds a zero byte: turn each length prefix into one zero, drop the prefixes' other three bytes,
    # and the words come out of one decode and one split, both in C.
    joined = data.copy()
    joined[starts] = 0
    keep = np.ones(len(data), dtype=bool)
    for offset in range(1, PREFIX):
        keep[starts + offset] = False
    return _text(name, joined[keep][1:].tobytes()).split("\0")


def _short_element_starts(data: np.ndarray, count: int) -> np.ndarray | None:
    """Where each element starts, found at once when every element is 1 to 255 bytes without a zero byte.

    Then an element's length prefix is the only place where a nonzero byte is followed by three zeros. The
    positions found are checked to chain from the first element to the last byte; else the caller walks.
    """
    if count == 0 or len(data) < PREFIX:
        return None
    zero = data == 0
    starts = np.flatnonzero(~zero[:-3] & zero[1:-2] & zero[2:-1] & zero[3:])
    if len(starts) != count or np.count_nonzero(zero) != 3 * count or starts[0] != 0:
        return None
    ends = starts + PREFIX + data[starts]
    if ends[-1] != len(data) or not np.array_equal(starts[1:], ends[:-1]):
        return None
    return starts


def _walk_elements(name: str, raw: bytes, count: int) -> list[str]:
    """Element by element: for long words, zero bytes, or malformed data (which this reports)."""
    words, offset = [], 0
    for _ in range(count):
        length = int.from_bytes(raw[offset : offset + PREFIX], "little")
        end = offset + PREFIX + length
        if offset + PREFIX > len(raw) or end > len(raw):
            raise BadRequest(f"Input {name!r} has binary BYTES data that ends inside an element.")
        words.append(_text(name, raw[offset + PREFIX : end]))
        offset = end
    if offset != len(raw):
        raise BadRequest(f"Input {name!r} has {len(raw) - offset} bytes of binary data beyond its {count} elements.")
    return words


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise BadRequest(f"Input {name!r} holds bytes that are not UTF-8 text.") from None


# --- answers ----------------------------------------------------------------------------------------


def output_names(model: LoadedModel, decoded: Decoded) -> dict[str, bool]:
    """The outputs to send, each with whether it goes as binary data."""
    probabilities = model.predictor.has_probabilities
    if decoded.outputs is None:
        names = (PREDICT, PREDICT_PROBA) if probabilities else (PREDICT,)
        return dict.fromkeys(names, decoded.binary_output)
    if PREDICT_PROBA in decoded.outputs and not probabilities:
        raise BadRequest(f"Model {model.stem} gives no probabilities, so no predict_proba output; ask for predict.")
    return decoded.outputs


def encode(model: LoadedModel, prediction: Prediction, outputs: dict[str, bool], request_id: str) -> tuple[bytes, int]:
    """The answer's bytes, and the JSON header's length when binary tensors follow it (else 0)."""
    tensors, chunks = [], []
    for name, binary in outputs.items():
        tensor, chunk = _predict_tensor(prediction, binary) if name == PREDICT else _proba_tensor(prediction, binary)
        tensors.append(tensor)
        if chunk is not None:
            chunks.append(chunk)
    answer = {"model_name": model.stem, "model_version": model.version, "id": request_id, "outputs": tensors}
    # orjson writes a numpy array's values straight from its buffer, with no Python float made for each one.
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    return (b"".join([header, *chunks]), len(header)) if chunks else (header, 0)


def _predict_tensor(prediction: Prediction, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    tensor: dict[str, Any] = {"name": PREDICT, "shape": [len(prediction.indices)], "datatype": "BYTES"}
    if not binary:
        return {**tensor, "data": prediction.labels()}, None
    elements = [len(word).to_bytes(PREFIX, "little") + word for word in (c.encode() for c in prediction.classes)]
    chunk = b"".join(map(elements.__getitem__, prediction.indices.tolist()))
    return {**tensor, "parameters": {"binary_data_size": len(chunk)}}, chunk


def _proba_tensor(prediction: Prediction, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    probabilities = prediction.probabilities
    assert probabilities is not None
    parameters = {"classes": list(prediction.classes)}
    tensor: dict[str, Any] = {"name": PREDICT_PROBA, "shape": list(probabilities.shape), "datatype": "FP64"}
    if not binary:
        return {**tensor, "parameters": parameters, "data": probabilities.ravel()}, None
    chunk = probabilities.astype("<f8", copy=False).tobytes()
    return {**tensor, "parameters": {**parameters, "binary_data_size": len(chunk)}}, chunk
