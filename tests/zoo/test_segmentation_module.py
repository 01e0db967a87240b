import pytest
import torch

from zoo.lightning import SegmentationModule
from zoo.metrics import confusion_per_class, dice_iou

INFO = dict(num_classes=3, in_channels=1, spatial_dims=2, patch_size=[32, 32], class_names=["bg", "a", "b"],
            normalization={"kind": "zscore"})


def test_deep_supervision_loss_is_weighted_over_scales():
    m = SegmentationModule("unet_tiny", {"deep_supervision": True}, INFO)
    m.train()
    out = m(torch.randn(2, 1, 32, 32))
    assert isinstance(out, list) and [o.shape[-1] for o in out] == [32, 16, 8]
    label = torch.randint(0, 3, (2, 32, 32))
    loss = m.compute_loss(out, label)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in m.model.parameters())
    full_only = m.compute_loss(out[0].detach(), label)
    assert not torch.isclose(loss.detach(), full_only)  # the coarse scales contribute


def test_compile_and_channels_last_keep_the_state_dict_and_outputs():
    plain = SegmentationModule("unet_tiny", None, INFO)
    compiled = SegmentationModule("unet_tiny", None, INFO, compile=True, channels_last=True)
    assert list(plain.state_dict()) == list(compiled.state_dict())  # the compiled wrapper adds no keys
    cl = SegmentationModule("unet_tiny", None, INFO, channels_last=True)
    cl.load_state_dict(plain.state_dict())
    plain.eval(), cl.eval()
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(plain(x), cl(x), rtol=1e-4, atol=1e-4)


def test_contradicting_model_kwargs_are_named():
    with pytest.raises(ValueError, match="model_kwargs.num_classes=5 contradicts .* num_classes=3"):
        SegmentationModule("unet_tiny", {"num_classes": 5}, INFO)


def test_summarize_validation_skips_classes_never_scored():
    m = SegmentationModule("unet_tiny", None, INFO)
    sums = torch.tensor([[4.0, 1.5, 0.0], [4.0, 1.0, 0.0], [4.0, 2.0, 0.0],  # Dice sum, IoU sum, cases scored
                         [50.0, 6.0, 0.0], [3.0, 4.0, 0.0], [4.0, 2.0, 0.0]], dtype=torch.float64)  # tp, fp, fn
    out = m.summarize_validation(sums)
    assert out["val/dice_a"] == pytest.approx(0.75) and out["val/iou_a"] == pytest.approx(0.5)
    assert "val/dice_b" not in out
    assert out["val/dice"] == pytest.approx(0.75) and out["val/miou"] == pytest.approx(0.5)
    assert out["val/dice_pooled"] == pytest.approx(12 / 18)  # class a: 2tp / (2tp + fp + fn); b never present


def test_validation_windows_need_not_be_multiples_when_the_model_pads():
    info = dict(INFO, patch_size=[20, 28])
    m = SegmentationModule("unet_tiny", {"pad_input": True}, info).eval()
    logits = m.predict_logits(torch.randn(1, 1, 44, 52))  # larger than the patch: sliding window of 20x28
    assert logits.shape == (1, 3, 44, 52)


def test_test_stage_reports_the_validation_metrics_under_test_names(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    cases = [{"image": torch.randn(1, 32, 32), "label": torch.randint(0, 3, (32, 32))} for _ in range(3)]
    loader = DataLoader(cases, batch_size=2)
    m = SegmentationModule("unet_tiny", None, INFO)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    val = trainer.validate(m, loader, verbose=False)[0]
    test = trainer.test(m, loader, verbose=False)[0]
    assert {"val/dice", "val/miou", "val/dice_a", "val/dice_pooled"} <= set(val)
    with torch.no_grad():  # pooled Dice = Dice of the confusion counts summed over the three cases
        conf = sum(confusion_per_class(m.predict_logits(c["image"][None]).argmax(1)[0], c["label"], 3) for c in cases)
    dice = dice_iou(conf)[0][1:]
    assert val["val/dice_pooled"] == pytest.approx(dice[~torch.isnan(dice)].mean().item())
    expected = {k.replace("val/", "test/"): v for k, v in val.items()}
    assert "test/loss" in test and not any(k.startswith("val/") for k in test)
    assert test == pytest.approx(expected)
