"""What the settings and the core both hold to: the model-file name rule and suffix, the log formats, the drift floor.

Standard library only: the settings import this and nothing else of the app, so checking a setting (the
`python -m app` supervisor, app/connection.py) loads neither numpy nor scikit-learn.
"""

from __future__ import annotations

import re
from typing import Literal

# Every model file in MODELS_DIR ends so; a name in a request may leave it out.
SUFFIX = ".pkl"
# A model name is a plain file name: no separators, no leading dot, so never a path.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MODEL_NAME_MAX_LENGTH = 128
LOG_FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]
# Below this many records in the window a PSI is mostly sampling noise: shown, not judged. DRIFT_WINDOW's floor.
MIN_RECORDS = 100


def is_model_name(value: str) -> bool:
    return len(value) <= MODEL_NAME_MAX_LENGTH and MODEL_NAME_PATTERN.fullmatch(value) is not None
