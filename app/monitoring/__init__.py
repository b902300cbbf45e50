"""Drift monitoring: each model's recent traffic against the reference profile its training wrote. No HTTP.

A model file's metadata["reference"] (scripts/train.py) describes the training rows: each numeric feature's
decile bins (open at both ends), min and max; each categorical feature's category shares; the predicted-class
shares. For every batch predicted, the Monitor copies the records' measurements, categories, classes and
probabilities into a ring holding the model's last DRIFT_WINDOW records (app/buffers.py: in memory, or shared
by the workers); records leaving the ring are first folded into running totals. Bins, shares and PSI are
computed when someone reads the figures (a scrape, the /monitor page), so a prediction pays only for a few
array copies. A file without a profile, or with a malformed one, is served as before, without figures.

In four modules, each importing only those listed after it:
- monitor.py: the Monitor, which the DataPlane calls: a tally per model file, swept when the file goes;
- figures.py: PSI, its reading, and a model's DriftReport built from its counts;
- tally.py: one model file's counts, the ring of its last records and the totals of every record, and their Layout;
- profile.py: the reference profile, read from the model file and checked.
"""
