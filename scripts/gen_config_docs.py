"""Regenerate docs/config.md from the field docstrings of rlalign/config/schema.py.

    python scripts/gen_config_docs.py
"""

from pathlib import Path

from rlalign.config import Config
from rlalign.config.loading import reference_markdown

OUT = Path(__file__).resolve().parents[1] / "docs" / "config.md"

if __name__ == "__main__":
    OUT.write_text(reference_markdown(Config, "Configuration reference"))
    print(f"wrote {OUT}")
