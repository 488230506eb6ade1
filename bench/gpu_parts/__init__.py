"""The parts of ``bench/gpu.py``: one module per measurement, plus its budget and its report.

Each part is ``run(ctx, record)``: it reads the shared ``Context`` and appends what it measures to
``record["rows"]`` as it goes, so that a part stopped at its budget keeps what it finished.
"""
