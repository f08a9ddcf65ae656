"""The argument types every command line shares, and the three command lines refusing bad values
through them (one line on stderr, exit code 2), before any data or model is loaded."""

import argparse

import pytest

from chestx.argtypes import (
    join_host_port,
    non_negative_int,
    open_fraction,
    port,
    positive_float,
    positive_int,
    proportion,
    split_host_port,
    strength,
)
from chestx.cli import main


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("64", 64), (" 8 ", 8)])
def test_positive_int_accepts(text, value):
    assert positive_int(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "x", ""])
def test_positive_int_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="must be a positive integer"):
        positive_int(text)


def test_non_negative_int():
    assert non_negative_int("0") == 0 and non_negative_int("6") == 6
    for bad in ("-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="an integer >= 0"):
            non_negative_int(bad)


def test_proportion_refuses_a_percentage():
    assert proportion("0.95") == 0.95 and proportion("1") == 1.0
    for bad, phrase in (
        ("95", "at most 1"),  # a sensitivity typed as a percentage
        ("0", "above 0"),
        ("-0.5", "above 0"),
        ("nan", "above 0"),
        ("x", "a number between 0 and 1"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=phrase):
            proportion(bad)


def test_positive_float():
    assert positive_float("1e-3") == 1e-3 and positive_float("2") == 2.0
    for bad in ("0", "-1e-3", "inf", "nan", "fast"):
        with pytest.raises(argparse.ArgumentTypeError, match="a number above 0"):
            positive_float(bad)


def test_open_fraction():
    assert open_fraction("0.995") == 0.995
    for bad, phrase in (
        ("0", "exclusive"),
        ("1", "exclusive"),
        ("1.5", "exclusive"),
        ("x", "a number"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=phrase):
            open_fraction(bad)


def test_strength():
    assert strength(0.9)("0") == 0.0 and strength(0.9)("0.9") == 0.9
    assert strength()("3") == 3.0  # no upper bound
    for parse, bad, phrase in (
        (strength(0.9), "-0.1", "between 0 and 0.9"),
        (strength(0.9), "1.5", "between 0 and 0.9"),
        (strength(0.9), "nan", "between 0 and 0.9"),
        (strength(), "-1", "at least 0"),
        (strength(), "inf", "at least 0"),
        (strength(), "strong", "a number"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=phrase):
            parse(bad)


def test_port_range():
    assert port("1") == 1 and port("65535") == 65535
    for bad, phrase in (("0", "1-65535"), ("65536", "1-65535"), ("http", "must be a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=phrase):
            port(bad)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("example.org:443", ("example.org", 443)),
        ("[::1]:8470", ("::1", 8470)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_split_and_join_host_port_round_trip(text, parsed):
    assert split_host_port(text) == parsed
    assert join_host_port(*parsed) == text


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("localhost", "HOST:PORT"),
        (":8000", "HOST:PORT"),
        ("localhost:http", "port must be a number"),
        ("localhost:70000", "1-65535"),
    ],
)
def test_split_host_port_says_what_is_wrong(text, phrase):
    with pytest.raises(ValueError, match=phrase):
        split_host_port(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "d", "--out", "o", "--epochs", "0"],
        ["train", "--data", "d", "--out", "o", "--ema", "1"],
        ["train", "--data", "d", "--out", "o", "--stretch", "-0.2"],
        ["train", "--data", "d", "--out", "o", "--rotation", "400"],
        ["train", "--data", "d", "--out", "o", "--mixup", "-1"],
        ["train", "--data", "d", "--out", "o", "--min-sensitivity", "95"],
        ["train", "--data", "d", "--out", "o", "--limit", "-5"],
        ["train", "--data", "d", "--out", "o", "--lr", "0"],
        ["train", "--data", "d", "--out", "o", "--label-smoothing", "0.9"],
        ["train", "--data", "d", "--out", "o", "--patience", "-1"],
        ["calibrate", "--data", "d", "--out", "o", "--min-sensitivity", "1.5"],
        ["ensemble", "--member", "m", "--data", "d", "--out", "o", "--zoom-out", "0.6"],
        ["tune", "--space", "s.yaml", "--max-trials", "-1"],
        ["tune", "--space", "s.yaml", "--min-sensitivity", "0"],
        ["serve", "--workers", "none"],
        ["serve", "--port", "99999"],
    ],
    ids=[
        "train",
        "train-ema",
        "train-stretch",
        "train-rotation",
        "train-mixup",
        "train-min-sensitivity",
        "train-limit",
        "train-lr",
        "train-label-smoothing",
        "train-patience",
        "calibrate-min-sensitivity",
        "ensemble-zoom-out",
        "tune",
        "tune-min-sensitivity",
        "serve-workers",
        "serve-port",
    ],
)
def test_every_command_line_refuses_through_them(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    phrases = (
        "must be a positive integer",
        "1-65535",
        "exclusive",
        "between 0 and",
        "at least 0",
        "at most 1",
        "above 0",
        "an integer >= 0",
    )
    assert any(phrase in err for phrase in phrases)
