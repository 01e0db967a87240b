"""The example configs' `data` sections parse with jsonargparse (as LightningCLI does) and agree with the model."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import yaml
from jsonargparse import ArgumentParser

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["configs/drive/unet.yaml", "configs/hippocampus/unet.yaml"]


def _parse(config: str, root: Path | None = None):
    cfg = yaml.safe_load((REPO / config).read_text())
    data = cfg["data"]
    if root is not None:
        data["init_args"]["root"] = str(root)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    return cfg, parser, parser.parse_object({"data": data})


@pytest.mark.parametrize("config", CONFIGS)
def test_data_section_parses(config: str) -> None:
    _, _, ns = _parse(config)
    assert ns.data.class_path.startswith("zoo.data.")


@pytest.mark.parametrize("config", CONFIGS)
def test_data_section_builds_on_the_real_data(config: str, shared_datasets: Path) -> None:
    cfg, _, _ = _parse(config)
    root = shared_datasets / Path(cfg["data"]["init_args"]["root"]).name
    cfg, parser, ns = _parse(config, root)
    dm = parser.instantiate_classes(ns).data
    kwargs = cfg["model"]["init_args"]["model_kwargs"]
    assert (dm.num_classes, dm.in_channels, dm.spatial_dims) == (kwargs["num_classes"], kwargs["in_channels"],
                                                                 kwargs["spatial_dims"])
