"""The aesthetic reward: LAION's state-dict layout (load, forward, errors) and the built-in predictor."""

import pytest
import torch
from rlalign.rewards.aesthetic import AestheticScore, expected_layout, load_aesthetic_mlp, save_aesthetic_mlp
from rlalign.rewards.registry import build_reward
from torch import nn

from rlalign.config import RewardSpec
from rlalign.shapes import render_batch, sample_scenes
from rlalign.tasks.shapes.reward_data import DEGRADATIONS, degrade


def laion_state_dict(input_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the official keys and shapes (as in sac+logos+ava1-l14-linearMSE.pth)."""
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) / 8 for key, shape in expected_layout(input_size).items()}


def by_hand(state: dict[str, torch.Tensor], embeddings_BD: torch.Tensor) -> torch.Tensor:
    """LAION's forward written out: five affine maps, no activations (dropout is off at eval)."""
    layers = nn.Sequential(*[nn.Linear(*state[f"layers.{i}.weight"].shape[::-1]) for i in (0, 2, 4, 6, 7)])
    with torch.no_grad():
        for linear, i in zip(layers, (0, 2, 4, 6, 7)):
            linear.weight.copy_(state[f"layers.{i}.weight"])
            linear.bias.copy_(state[f"layers.{i}.bias"])
        return layers(embeddings_BD)


def test_official_layout_pth_loads_and_matches_a_hand_built_forward(tmp_path):
    state = laion_state_dict(768)
    torch.save(state, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    mlp = load_aesthetic_mlp(str(tmp_path / "sac+logos+ava1-l14-linearMSE.pth"))
    embeddings_BD = nn.functional.normalize(torch.randn(5, 768), dim=-1)
    assert mlp.input_size == 768 and not mlp.training
    assert torch.allclose(mlp(embeddings_BD), by_hand(state, embeddings_BD), atol=1e-6)
    assert set(mlp.state_dict()) == set(state)  # exactly the official keys, nothing extra


def test_wrapped_and_safetensors_files_load(tmp_path):
    state = laion_state_dict(128, seed=1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.ckpt")
    mlp = load_aesthetic_mlp(str(tmp_path / "wrapped.ckpt"))
    embeddings_BD = nn.functional.normalize(torch.randn(4, 128), dim=-1)
    assert torch.allclose(mlp(embeddings_BD), by_hand(state, embeddings_BD), atol=1e-6)
    save_aesthetic_mlp(mlp, str(tmp_path / "mlp.safetensors"))  # fp16, as the built-in one ships
    again = load_aesthetic_mlp(str(tmp_path / "mlp.safetensors"))
    assert torch.allclose(again(embeddings_BD), mlp(embeddings_BD), atol=2e-3)


@pytest.mark.parametrize("damage, complaint", [
    ("missing", r'Missing key\(s\) in state_dict: "layers\.7\.bias"'),
    ("shape", r"size mismatch for layers\.2\.weight: .*\[128, 512\].*\[128, 1024\]"),
    ("extra", r'Unexpected key\(s\) in state_dict: "layers\.1\.weight"'),
])
def test_wrong_layout_names_the_file_the_bad_keys_and_the_expected_layout(tmp_path, damage, complaint):
    state = laion_state_dict(64)
    if damage == "missing":
        del state["layers.7.bias"]
    elif damage == "shape":
        state["layers.2.weight"] = torch.zeros(128, 512)
    else:
        state["layers.1.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"(?s)args\.weights = '.*bad\.pth' is not in LAION's aesthetic-predictor "
                                         rf"layout: .*{complaint}.*Expected exactly \{{layers\.0\.weight \[1024, 64\]"):
        load_aesthetic_mlp(str(tmp_path / "bad.pth"))


def test_file_without_a_first_layer_is_refused_with_the_missing_key(tmp_path):
    state = laion_state_dict(64)
    del state["layers.0.weight"]  # D cannot be read: the message still names what is missing
    torch.save(state, tmp_path / "headless.pth")
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "layers\.0\.weight"'):
        load_aesthetic_mlp(str(tmp_path / "headless.pth"))


def test_missing_predictor_file_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"aesthetic: args\.weights"):
        AestheticScore(weights=str(tmp_path / "none.pth"))


def test_predictor_for_another_clip_width_is_refused(tmp_path):
    torch.save(laion_state_dict(768), tmp_path / "l14.pth")
    with pytest.raises(ValueError, match="expects 768-d CLIP embeddings but 'shapes-clip' gives 128-d"):
        AestheticScore(weights=str(tmp_path / "l14.pth"))


@pytest.fixture(scope="module")
def reward():
    return build_reward(RewardSpec(name="aesthetic", args={"weights": "builtin:shapes-aesthetic"}))


def test_builtin_scores_clean_above_heavily_damaged(reward):
    clean_B3HW = render_batch(sample_scenes("all", 8, seed=777))
    clean = torch.tensor(reward([""] * 8, clean_B3HW))
    generator = torch.Generator().manual_seed(0)
    for kind in DEGRADATIONS:
        damaged = torch.tensor(reward([""] * 8, degrade(clean_B3HW, kind, 1.0, generator)))
        # Measured on 500 fresh scenes: 95-99.6 % per kind at severity 1 (rlalign/assets/shapes-aesthetic.json).
        assert (clean > damaged).sum() >= 7, (kind, clean, damaged)
        assert clean.mean() > damaged.mean() + 0.5
    assert clean.mean() > 7.0  # trained towards 10 for clean renders, 1 for fully damaged ones


def test_builtin_rejects_text_and_unknown_args(reward):
    with pytest.raises(ValueError, match="does not apply to text"):
        reward(["a red circle on the left"], ["a caption"])
    with pytest.raises(ValueError, match=r"'aesthetic': unknown args \['architecture'\]"):
        build_reward(RewardSpec(name="aesthetic", args={"architecture": "ViT-L-14"}))


def test_degradations_are_graded_and_validated():
    clean_B3HW = render_batch(sample_scenes("all", 2, seed=1))
    generator = torch.Generator().manual_seed(0)
    for kind in DEGRADATIONS:
        assert torch.equal(degrade(clean_B3HW, kind, 0.0, generator), clean_B3HW)
        mild, heavy = (degrade(clean_B3HW, kind, s, generator) for s in (0.25, 1.0))
        assert 0 < (mild - clean_B3HW).abs().mean() < (heavy - clean_B3HW).abs().mean()
        assert heavy.min() >= 0 and heavy.max() <= 1
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(clean_B3HW, "jpeg", 0.5, generator)
