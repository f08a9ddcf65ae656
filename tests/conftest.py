"""Fixtures shared by the whole test suite (append yours below)."""

from __future__ import annotations

from pathlib import Path

import pytest

RESOURCES = Path(__file__).resolve().parent / "resources"


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
