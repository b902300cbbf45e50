"""Every prediction captured, labels joined to it later, live accuracy per model version (core: no HTTP).

- records.py: what is captured (a batch's references) and the one row it becomes, its values packed;
- schema.py: the store's tables, the engine for a URL, the schema created or upgraded;
- reads.py: what the figures read: a version's window of labelled records, its recent predictions;
- store.py: the SQLite or PostgreSQL store: its writes, and its reads opened, through SQLAlchemy Core;
- handover.py: a captured answer as the bytes a worker hands its writer process, and the frames on their pipe;
- process.py: a worker's side: the bounded queue the request path fills, the thread that sends it on;
- child.py: the writer process (python -m app.capture), which runs the writer;
- writer.py: the writer's bounded queue and the thread that writes it to the store in batches;
- accuracy.py: accuracy with its Wilson interval, confusion counts, coverage, label delay;
- recorder.py: the face the data plane uses.
"""

from app.capture.accuracy import Performance
from app.capture.recorder import Figures, Recorder
from app.capture.records import SPECIES, Label, Reference
from app.capture.schema import OUTCOMES
from app.capture.store import LabelOutcome

__all__ = ["OUTCOMES", "SPECIES", "Figures", "Label", "LabelOutcome", "Performance", "Recorder", "Reference"]
