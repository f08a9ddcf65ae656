"""Finding data, patient ids, and the patient-grouped split."""

import csv
from pathlib import Path

import pytest
from dicomfiles import make_dicom

from chestx import imaging
from chestx.data import Record, find_data, make_splits, patient_id, split_by_patient, write_manifest
from chestx.errors import DataError


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0115-0001.jpeg", "IM-0115"),
        ("scan_07.png", "scan_07"),
    ],
)
def test_patient_id(name, patient):
    assert patient_id(name) == patient


def _records(n_patients=200, seed=0):
    import random

    rng = random.Random(seed)
    recs = []
    for p in range(n_patients):
        label = int(p % 4 != 0)  # 3:1 pneumonia, like the Kaggle data
        for k in range(rng.randint(1, 4)):
            recs.append(Record(Path(f"/d/{p}_{k}.jpeg"), label, f"p{p}"))
    return recs


def test_split_ratios_stratified_and_grouped():
    recs = _records()
    splits = split_by_patient(recs, seed=1)
    assert sum(len(v) for v in splits.values()) == len(recs)
    patients = {k: {r.patient for r in v} for k, v in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    for name, share in {"train": 0.7, "val": 0.2, "test": 0.1}.items():
        assert len(splits[name]) / len(recs) == pytest.approx(share, abs=0.04)
        frac_pos = sum(r.label for r in splits[name]) / len(splits[name])
        assert frac_pos == pytest.approx(0.75, abs=0.08)


def test_split_is_deterministic_for_a_seed():
    recs = _records()
    a, b, c = (split_by_patient(recs, seed=s) for s in (7, 7, 8))
    assert a == b
    assert a != c


def test_real_fixture_layout(xray_dir):
    found = find_data(xray_dir)
    assert set(found) == {"all"}
    labels = [r.label for r in found["all"]]
    assert labels.count(0) >= 10 and labels.count(1) >= 10


def test_kaggle_root_layout(tmp_path, xray_dir):
    train = tmp_path / "chest_xray" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (train / cls).mkdir(parents=True)
        for f in sorted((xray_dir / cls).iterdir())[:3]:
            (train / cls / f.name).write_bytes(f.read_bytes())
    found = find_data(tmp_path)
    assert set(found) == {"train"} and len(found["train"]) == 6
    splits, external = make_splits(tmp_path, seed=3)
    assert sum(map(len, splits.values())) == 6 and external == []


def test_class_folders_are_matched_in_any_case(tmp_path, xray_dir):
    """Other hospitals' folders say normal/ or Pneumonia/; the labels must not change."""
    for cls, name in (("NORMAL", "normal"), ("PNEUMONIA", "Pneumonia")):
        (tmp_path / name).mkdir()
        for f in sorted((xray_dir / cls).iterdir())[:3]:
            (tmp_path / name / f.name).write_bytes(f.read_bytes())
    found = find_data(tmp_path)
    assert [(r.path.parent.name, r.label) for r in found["all"]] == [("normal", 0)] * 3 + [
        ("Pneumonia", 1)
    ] * 3
    (tmp_path / "NORMAL").mkdir()  # which of the two is NORMAL is not ours to guess
    with pytest.raises(DataError, match="both NORMAL/ and normal/"):
        find_data(tmp_path)


def test_files_are_found_by_content_and_hidden_ones_skipped(tmp_path, xray_dir):
    """A PACS export names its DICOM files without an extension; a Mac copy leaves ``._name``
    metadata beside each image, Jupyter an ``.ipynb_checkpoints/`` of copies."""
    from pydicom.examples import get_path

    from chestx.predict import image_files

    normal, pneumonia = tmp_path / "NORMAL", tmp_path / "PNEUMONIA"
    (normal / ".ipynb_checkpoints").mkdir(parents=True)
    pneumonia.mkdir()
    xray = sorted((xray_dir / "NORMAL").iterdir())[0]
    (normal / "IM000001").write_bytes(Path(get_path("ct")).read_bytes())  # a real DICOM file
    dicomdir = Path(get_path("ct")).parent / "dicomdirtests" / "DICOMDIR"  # a CD's index
    (normal / "DICOMDIR").write_bytes(dicomdir.read_bytes())
    # objects a PACS export holds beside its images: a report and an ECG, with and without suffix
    (normal / "IM000002").write_bytes((dicomdir.parent.parent / "test-SR.dcm").read_bytes())
    (normal / "ecg.dcm").write_bytes(Path(get_path("waveform")).read_bytes())
    (normal / "1.2.840.113619.2.55.3").write_bytes(xray.read_bytes())  # suffix ".3": a JPEG
    (normal / ".ipynb_checkpoints" / xray.name).write_bytes(xray.read_bytes())
    (normal / f"._{xray.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (normal / "notes").write_text("patient list, not an image")
    (pneumonia / "scan.JPG").write_bytes(sorted((xray_dir / "PNEUMONIA").iterdir())[0].read_bytes())
    found = find_data(tmp_path)["all"]
    expected = [normal / "1.2.840.113619.2.55.3", normal / "IM000001", pneumonia / "scan.JPG"]
    assert [r.path for r in found] == expected
    assert [r.label for r in found] == [0, 0, 1]
    assert image_files([normal]) == [str(p) for p in expected[:2]]


def test_dicom_files_are_grouped_by_patient_id_which_stays_private(tmp_path):
    """A PACS export names files by image, not patient: the PatientID in each DICOM header
    keeps one patient's X-rays in one split, and never reaches the manifest."""
    import pydicom
    from pydicom.examples import get_path

    ct = pydicom.dcmread(get_path("ct"))
    owners = {"NORMAL": ["MRN-0042"] * 3 + ["MRN-0007", ""], "PNEUMONIA": ["MRN-0099"] * 2}
    for cls, ids in owners.items():
        (tmp_path / cls).mkdir()
        for i, pid in enumerate(ids):
            ct.PatientID = pid
            ct.save_as(tmp_path / cls / f"IM{i:06d}")
    found = find_data(tmp_path)["all"]
    assert [r.patient for r in found] == ["dicom-2"] * 3 + ["dicom-1", "IM000004"] + ["dicom-3"] * 2
    splits = split_by_patient(found, seed=0)
    holding = [s for s, recs in splits.items() for r in recs if r.patient == "dicom-2"]
    assert len(holding) == 3 and len(set(holding)) == 1  # its three X-rays, in one split
    write_manifest(splits, tmp_path / "manifest.csv", tmp_path)
    assert "MRN" not in (tmp_path / "manifest.csv").read_text()


def test_xrays_beside_the_class_folders_are_named_as_left_out(tmp_path, xray_dir, caplog):
    """A third class (``COVID/``) or loose X-rays are not scored; saying so keeps a user from
    reading the metrics as theirs. Folders and files without X-rays are not named."""
    xrays = sorted((xray_dir / "NORMAL").iterdir())
    for cls in ("NORMAL", "PNEUMONIA", "COVID"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / xrays[0].name).write_bytes(xrays[0].read_bytes())
    (tmp_path / "loose.jpeg").write_bytes(xrays[1].read_bytes())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "protocol.txt").write_text("how the X-rays were labelled")
    (tmp_path / "notes.txt").write_text("not an image")
    assert len(find_data(tmp_path)["all"]) == 2
    assert "COVID/, loose.jpeg left out" in caplog.text
    assert "docs" not in caplog.text and "notes.txt" not in caplog.text


def test_a_normal_folder_alone_is_data(tmp_path, xray_dir, caplog):
    """NORMAL/ without PNEUMONIA/ (a specificity audit) is read, with a one-class warning."""
    (tmp_path / "NORMAL").mkdir()
    for f in sorted((xray_dir / "NORMAL").iterdir())[:4]:
        (tmp_path / "NORMAL" / f.name).write_bytes(f.read_bytes())
    found = find_data(tmp_path)
    assert set(found) == {"all"} and [r.label for r in found["all"]] == [0] * 4
    assert "only one class" in caplog.text


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_data(tmp_path / "nope")
    with pytest.raises(DataError, match="NORMAL"):
        find_data(tmp_path)


def test_manifest_is_auditable(tmp_path):
    recs = _records(20)
    splits = split_by_patient(recs, seed=0)
    digest = write_manifest(splits, tmp_path / "manifest.csv", root=Path("/d"))
    rows = list(csv.DictReader((tmp_path / "manifest.csv").read_text().splitlines()))
    assert len(rows) == len(recs) and len(digest) == 64
    assert {r["split"] for r in rows} <= {"train", "val", "test"}
    assert all(not r["path"].startswith("/") for r in rows)


@pytest.mark.slow
def test_unreadable_files_are_skipped_and_counted_in_the_card(tmp_path, xray_dir):
    """A corrupt JPEG, a text file named .png and a lateral view (its DICOM header says so) in
    the data: training goes on without them and the card counts and names them."""
    import json
    import shutil

    from chestx.train import TrainConfig, train

    data = tmp_path / "data"
    shutil.copytree(xray_dir, data)
    good = next((data / "NORMAL").iterdir()).read_bytes()
    lateral = make_dicom(imaging.decode_gray(good), ViewPosition="LL")  # a PACS chest study's
    broken = {
        data / "NORMAL" / "person9001_bacteria_1.jpeg": good[:64],  # cut off in its header
        data / "PNEUMONIA" / "person9002_virus_1.png": b"not an image at all",
        data / "NORMAL" / "person9003_lateral.dcm": lateral,
    }
    for path, content in broken.items():
        path.write_bytes(content)
    out = tmp_path / "model"
    train(
        TrainConfig(
            data=data,
            out=out,
            epochs=1,
            batch_size=8,
            image_size=32,
            augmentation=None,
            verbose=0,
        )
    )
    card = json.loads((out / "card.json").read_text())
    assert card["data"]["skipped"] == 3
    assert set(card["data"]["skipped_files"]) == {str(p) for p in broken}
    skipped_lateral = card["data"]["skipped_files"][str(data / "NORMAL" / "person9003_lateral.dcm")]
    assert "lateral view (ViewPosition LL)" in skipped_lateral
    assert sum(split["n"] for split in card["data"]["counts"].values()) == 27  # listed, not used
