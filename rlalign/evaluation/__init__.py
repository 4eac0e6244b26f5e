"""Evaluation and reports: GenEval-style evaluation of a policy (`geneval.py`), the summary of a
run (`run_report.py`) and of a prefix-length sweep (`sweep_report.py`)."""
