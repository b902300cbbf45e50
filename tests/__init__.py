"""The test suite: one file per module or flow; shared helpers in tests/helpers.py, fixtures in conftest.py."""
