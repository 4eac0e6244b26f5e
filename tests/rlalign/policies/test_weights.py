"""Model files: one safetensors file with the architecture in its metadata, written atomically and
loaded strictly (a file that does not fit its architecture names the tensors)."""

import pytest
import torch
from torch import nn

from rlalign.policies.weights import load_with_architecture, save_with_architecture


def build(architecture: dict) -> nn.Module:
    return nn.Sequential(*[nn.Linear(architecture["width"], architecture["width"]) for _ in range(architecture["depth"])])


def test_round_trip_in_half_precision(tmp_path):
    torch.manual_seed(0)
    module = build({"width": 4, "depth": 2})
    path = save_with_architecture(module, {"width": 4, "depth": 2}, tmp_path / "m.safetensors", file_format="toy")
    loaded = load_with_architecture(path, file_format="toy", build=build, wrong_format_hint="")
    for (name, saved), restored in zip(module.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(saved.half().float(), restored), name
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_a_file_that_does_not_fit_its_architecture_names_the_tensors(tmp_path):
    path = save_with_architecture(build({"width": 4, "depth": 2}), {"width": 4, "depth": 3},
                                  tmp_path / "m.safetensors", file_format="toy")
    with pytest.raises(ValueError, match=r"does not match its architecture: .*Missing key\(s\).*2\.weight"):
        load_with_architecture(path, file_format="toy", build=build, wrong_format_hint="")
