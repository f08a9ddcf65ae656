"""Fixtures shared by the whole test suite (append yours below)."""

from __future__ import annotations

from pathlib import Path

import pytest

RESOURCES = Path(__file__).resolve().parent / "resources"
DEPLOY = Path(__file__).resolve().parent / "deploy"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep tests/deploy on one worker, in file order, when xdist runs the suite (`make test`).

    Its tests boot Debian hosts that install the whole service (apt, a venv with TensorFlow):
    side by side on two cores they would starve each other and every other test, and one after
    the other each host reuses the apt downloads the one before kept. ``--dist loadgroup``
    sends every test of one ``xdist_group`` to the same worker; without xdist the mark does
    nothing.
    """
    for item in items:
        if DEPLOY in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("deploy"))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist, never called
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """Stop if a worker did not carry the deploy group to the scheduler.

    xdist carries the group in each test's node ID (``…@deploy``); pytest 9.2 stopped that
    (pytest-xdist#1386), and the deploy tests then ran on both workers at once.
    """
    prefix = f"{DEPLOY.relative_to(node.config.rootpath).as_posix()}/"
    deploy = [i for i in ids if i.startswith(prefix)]
    if node.config.getoption("dist") == "loadgroup" and any("@" not in i for i in deploy):
        pytest.exit(
            "--dist loadgroup did not keep tests/deploy on one worker: this pytest-xdist does "
            "not support this pytest (see the pin in pyproject.toml)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def resources_dir() -> Path:
    """tests/resources/: small files checked into the repository."""
    return RESOURCES


@pytest.fixture(scope="session")
def xray_dir() -> Path:
    """24 real chest X-rays, 12 NORMAL/ and 12 PNEUMONIA/ (bacterial and viral), one per patient.

    Copied unchanged from the Kaggle training split (224x224 3-channel JPEG, grey content), so
    end-to-end tests can train and predict on real images in seconds.
    """
    return RESOURCES / "xrays"


@pytest.fixture(scope="session")
def xray_bytes(xray_dir: Path) -> bytes:
    """The bytes of one real X-ray JPEG (a pneumonia case), as an upload would carry them."""
    return (xray_dir / "PNEUMONIA" / "person1000_bacteria_2931.jpeg").read_bytes()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small, untrained chestnet model directory (64 px, with a LiteRT export).

    Web and serving tests need a model that loads, not one that is right: they must not depend
    on the shipped model's quality, or on it existing.
    """
    import keras

    from chestx.litert import export_litert
    from chestx.modeldir import save_model
    from chestx.models import build_model

    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("tiny_model")
    model = build_model("chestnet", 64, filters=(8, 16))
    card = {
        "name": "tiny-test",
        "version": "0.0-test",
        "arch": "chestnet",
        "image_size": 64,
        "intensity": "clahe",
        "threshold": 0.5,
        "threshold_rule": "fixed for tests",
        "metrics": {
            "test": {
                "n": 10,
                "threshold": 0.5,
                "sensitivity": 0.9,
                "specificity": 0.8,
                "roc_auc": 0.85,
            }
        },
    }
    save_model(model, out, card, h5=False)
    export_litert(model, out)
    return out


@pytest.fixture(scope="session")
def gated_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with the shipped model's input gate copied in (``chestx.gate.copy_gate``).

    The gate is independent of the classifier, so the tiny model refuses what the shipped one
    refuses; ``tiny_model_dir`` itself has no gate (the "absent" case).
    """
    import shutil

    from chestx.config import DEFAULT_MODEL_DIR
    from chestx.gate import copy_gate

    out = tmp_path_factory.mktemp("gated") / "model"
    shutil.copytree(tiny_model_dir, out)
    copy_gate(DEFAULT_MODEL_DIR, out)
    return out


@pytest.fixture(scope="session")
def negative_images(xray_dir: Path) -> dict[str, list[bytes]]:
    """Three images of every negative family (measuring seed), as file bytes."""
    from chestx import negatives

    xrays = [p.read_bytes() for p in sorted(xray_dir.glob("*/*.jpeg"))]
    return {
        name: negatives.family(name, 3, negatives.EVAL_SEED, xrays=xrays)
        for name in negatives.FAMILIES
    }
