"""The test suite: a file per module (app/README.md, Tests, says which are not); helpers in tests/helpers.py
(paths, scripts, wait_for), tests/live.py (a live server) and tests/stack.py (the compose stack); fixtures in
conftest.py."""
