"""Regenerate docs/config.md from the field docstrings of rlalign/config/schema.py and of the families'
own settings (rlalign/policies/*/settings.py: sections a family validates itself).

    python scripts/gen_config_docs.py
"""

from pathlib import Path

from rlalign.config import Config
from rlalign.config.loading import reference_markdown, section_markdown
from rlalign.policies.edit_flow.settings import EditFlowSettings
from rlalign.policies.insertion.settings import InsertionSettings
from rlalign.policies.infinity.settings import InfinitySettings

OUT = Path(__file__).resolve().parents[1] / "docs" / "config.md"
FAMILY_SECTIONS = [
    (InsertionSettings, "policy.insertion", "kind: insertion", ("The insertion sampler's settings, checked by the "
     "insertion family when it builds (rlalign/policies/insertion/settings.py).")),
    (EditFlowSettings, "policy.edit_flow", "kind: edit_flow", ("The τ-leap sampler's settings, checked by the Edit "
     "Flow family when it builds (rlalign/policies/edit_flow/settings.py).")),
    (InfinitySettings, "policy.infinity", "kind: infinity", ("Text encoder, resolution and schedule, checked by the "
     "Infinity family when it builds (rlalign/policies/infinity/settings.py; docs/infinity.md).")),
]


def markdown() -> str:
    """The whole reference: the schema, then each family's own sections."""
    sections = [section_markdown(cls, key, title, doc) for cls, key, title, doc in FAMILY_SECTIONS]
    return "\n".join([reference_markdown(Config, "Configuration reference"), *sections])


if __name__ == "__main__":
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
