"""Weights files: safe loading, ids, tables, refusal of foreign files."""

from __future__ import annotations

import pytest
import torch

from slimcodec.errors import SlimError, WeightsFileError
from slimcodec.weights import default_weights_path, load_weights, load_weights_bytes, weights_id_of


def test_loaded_weights_have_tables_for_every_width(tiny_weights):
    assert tiny_weights.widths == (8, 4)
    for width, table in tiny_weights.tables.items():
        assert table.channels == width
        table.validate()


def test_weights_id_is_the_sha256_prefix_of_the_file(tiny_weights_path, tiny_weights):
    assert tiny_weights.weights_id != weights_id_of(tiny_weights_path.read_bytes())  # new files: a content id
    assert len(tiny_weights.weights_id) == 8


def test_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SlimError, match="not a slimcodec weights file"):
        load_weights(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(SlimError, match="not a slimcodec weights file"):
        load_weights(other)


def test_missing_file_gives_a_clear_error(tmp_path):
    with pytest.raises(WeightsFileError, match="cannot read weights file") as caught:
        load_weights(tmp_path / "missing.pt")
    assert caught.value.path == str(tmp_path / "missing.pt")  # a field, not text to parse


def test_shipped_weights_load_with_the_paper_widths():
    wts = load_weights()
    assert wts.widths == (192, 144, 96, 72, 48)
    assert default_weights_path().name.startswith(f"slimcae-{wts.weights_id.hex()}.")


def test_loading_twice_gives_identical_models(tiny_weights_path):
    a = load_weights_bytes(tiny_weights_path.read_bytes())
    b = load_weights_bytes(tiny_weights_path.read_bytes())
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(a.model.analysis(x, 8), b.model.analysis(x, 8))


def constant_buffers(model) -> dict:
    names = model.constant_names()
    return {k: v for k, v in model.state_dict().items() if k in names}


def test_saved_weights_keep_the_constant_buffers_exact(tiny_weights):
    from slimcodec.models.factorized import SlimCAE

    fresh = constant_buffers(SlimCAE((8, 4)))
    loaded = constant_buffers(tiny_weights.model)
    assert loaded.keys() == fresh.keys()
    for name, value in fresh.items():
        assert torch.equal(loaded[name], value), name
    bound = loaded["entropy_bottleneck.8.likelihood_lower_bound.bound"]
    assert bound.item() > 0  # float16 made it 0: an infinite rate when training


def test_restore_constants_repairs_buffers_rounded_to_float16():
    from slimcodec.models.factorized import SlimCAE

    model = SlimCAE((8, 4))
    expected = constant_buffers(model)
    rounded = {k: v.half().float() for k, v in expected.items()}
    model.load_state_dict({**model.state_dict(), **rounded})
    assert constant_buffers(model)["entropy_bottleneck.4.likelihood_lower_bound.bound"].item() == 0
    model.restore_constants()
    for name, value in constant_buffers(model).items():
        assert torch.equal(value, expected[name]), name


def test_a_hyperprior_weights_file_names_its_architecture_and_holds_its_gaussian_tables(tmp_path):
    import torch

    from slimcodec.models.hyperprior import SlimCAEHyperprior
    from slimcodec.weights import load_weights, save_weights

    torch.manual_seed(0)
    model = SlimCAEHyperprior((8, 4))
    wid = save_weights(model, tmp_path / "h.pt")
    loaded = load_weights(tmp_path / "h.pt")
    assert loaded.weights_id == wid and loaded.architecture == "slimcae-hyperprior"
    assert isinstance(loaded.model, SlimCAEHyperprior) and loaded.widths == (8, 4)
    assert loaded.gaussian is not None and loaded.gaussian.levels == 64
    assert loaded.tables[4].channels == 4  # z's factorized tables, one per width


def test_the_shipped_factorized_file_loads_as_the_factorized_architecture():
    from slimcodec.weights import load_weights, shipped_weights_path

    shipped = load_weights(shipped_weights_path("df9f17e387a8f20d"))
    assert shipped.architecture == "slimcae-factorized" and shipped.gaussian is None
    assert shipped.weights_id.hex() == "df9f17e387a8f20d"


def test_the_default_weights_are_the_shipped_channel_model_with_slices_of_24():
    from slimcodec.latents.channel import contexts
    from slimcodec.weights import load_weights

    default = load_weights()
    assert default.architecture == "slimcae-channel" and default.gaussian is not None
    assert default.widths == (192, 144, 96, 72, 48)
    slice_channels, scale, mean = contexts(default)
    assert slice_channels == 24 and len(scale) == len(mean) == 7


def test_a_file_decodes_with_the_shipped_weights_its_header_names(tmp_path, monkeypatch):
    """Several releases' weights ship side by side; the default only picks what new files use."""
    from conftest import gradient_image

    from slimcodec import codec
    from slimcodec import weights as weights_module
    from slimcodec.models.factorized import SlimCAE
    from slimcodec.weights import install_shipped, save_weights, shipped_weights_ids

    monkeypatch.setattr(weights_module, "SHIPPED_DIR", tmp_path / "shipped")
    ids = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_weights(SlimCAE((8, 4)), tmp_path / f"w{seed}.pt")
        ids.append(install_shipped(tmp_path / f"w{seed}.pt").stem.removeprefix("slimcae-"))
    monkeypatch.setattr(weights_module, "DEFAULT_WEIGHTS_ID", ids[1])
    assert shipped_weights_ids() == sorted(ids)  # installing the second kept the first
    old = codec.encode(gradient_image(24, 16), 8, weights=load_weights(tmp_path / "shipped" / f"slimcae-{ids[0]}.pt"))
    assert codec.decode(old).size == (24, 16)  # no weights named: the header's id picks them
    assert codec.decode_latents(codec.encode(gradient_image(24, 16), 4))[0].header.weights_id.hex() == ids[1]


def test_a_weights_copy_saved_again_keeps_its_id(tiny_weights_path, tmp_path):
    import torch

    blob = torch.load(tiny_weights_path, weights_only=True)
    reordered = {k: blob[k] for k in reversed(list(blob))}  # other pickle bytes, same content
    reordered["meta"] = {"note": "copied"}
    copy = tmp_path / "copy.pt"
    torch.save(reordered, copy)
    assert copy.read_bytes() != tiny_weights_path.read_bytes()
    assert load_weights(copy).weights_id == load_weights(tiny_weights_path).weights_id


def test_changing_one_parameter_changes_the_id(tiny_weights_path, tmp_path):
    import torch

    blob = torch.load(tiny_weights_path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.is_floating_point())
    blob["state_dict"][name] = blob["state_dict"][name].clone()
    blob["state_dict"][name].view(-1)[0] += 1
    changed = tmp_path / "changed.pt"
    torch.save(blob, changed)
    assert load_weights(changed).weights_id != load_weights(tiny_weights_path).weights_id


def test_the_0_1_0_weights_keep_their_file_hash_id():
    from slimcodec.weights import shipped_weights_path

    path = shipped_weights_path("df9f17e387a8f20d", "torch")
    assert load_weights(path).weights_id == weights_id_of(path.read_bytes()) == bytes.fromhex("df9f17e387a8f20d")


@pytest.mark.parametrize("content", [b"garbage\n", b"", b"\x89PNG\r\n\x1a\n" + bytes(40), b"PK\x03\x04broken"])
def test_without_torch_a_file_that_is_not_weights_is_called_so_not_a_missing_torch(content, monkeypatch):
    from slimcodec import runtime

    monkeypatch.setattr(runtime, "installed", lambda backend: backend != "torch")
    with pytest.raises(SlimError, match="^not a slimcodec weights file$"):
        load_weights_bytes(content)


def test_without_torch_a_pt_weights_file_asks_for_torch(tiny_weights_path, monkeypatch):
    from slimcodec import runtime

    monkeypatch.setattr(runtime, "installed", lambda backend: backend != "torch")
    with pytest.raises(SlimError, match="needs torch"):
        load_weights_bytes(tiny_weights_path.read_bytes())
