"""The argument types every command line shares, and the three command lines refusing bad values
through them (one line on stderr, exit code 2)."""

import argparse

import pytest

from chestx.argtypes import (
    join_host_port,
    open_fraction,
    port,
    positive_int,
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
        ["tune", "--space", "s.yaml", "--max-trials", "-1"],
        ["serve", "--workers", "none"],
        ["serve", "--port", "99999"],
    ],
    ids=[
        "train",
        "train-ema",
        "train-stretch",
        "train-rotation",
        "train-mixup",
        "tune",
        "serve-workers",
        "serve-port",
    ],
)
def test_every_command_line_refuses_through_them(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    phrases = ("must be a positive integer", "1-65535", "exclusive", "between 0 and", "at least 0")
    assert any(phrase in err for phrase in phrases)
