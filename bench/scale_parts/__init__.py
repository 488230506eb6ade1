"""The parts of ``bench/scale.py``: one module per group of stages, and the measuring core."""
