"""`python -m app.capture`: a worker's capture writer process (app/capture/child.py)."""

from app.capture.child import main

main()
