"""The examples run as a user runs them and print what the tutorials show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(150)
def test_basic_tools_tutorial():
    out = run_example("01_basic_tools.py")
    assert "<Worker id:bob #objects:3>" in out  # x, y and z = x + x
    assert "(Wrapper)>[PointerTensor | me:" in out and "-> bob:" in out
    assert "tensor([ 2,  4,  6,  8, 10])" in out
    assert "tensor([2, 3, 4, 5, 6])" in out
    assert out.rstrip().endswith(
        "tensor([1., 2., 3., 4., 5.], requires_grad=True)\ntensor([1., 1., 1., 1., 1.])"
    )
    assert "tensor([ 2,  4,  6,  8, 10])\n{}\n" in out, "bob holds nothing after the gets"


@pytest.mark.timeout(150)
def test_pointer_chains_tutorial():
    out = run_example("03_pointer_chains.py")
    assert "(Wrapper)>[PointerTensor | alice:" in out and "-> bob:" in out
    assert "tensor([1, 2, 3, 4])" in out
    assert "tensor([ 2,  4,  6,  8, 10])" in out
    move_section = out.split("# Section 3.2 - Pointer Chain Operations")[1].splitlines()
    before, after = move_section[1:3], move_section[3:5]
    assert before[0].startswith("  bob: {") and before[0] != "  bob: {}"
    assert before[1] == "alice: {}"
    assert after[0] == "  bob: {}" and after[1].startswith("alice: {")
    assert move_section[5].startswith("(Wrapper)>[PointerTensor | me:")
    assert "-> alice:" in move_section[5]


@pytest.mark.timeout(200)
def test_encrypted_training_tutorial_tracks_plaintext():
    out = run_example("12_encrypted_training.py")
    assert out.startswith("(Wrapper)>AutogradTensor>FixedPrecisionTensor>[AdditiveSharingTensor]")
    rows = [line.split() for line in out.splitlines() if line.startswith("iter ")]
    assert len(rows) == 20
    encrypted = [float(row[4]) for row in rows]
    plaintext = [float(row[7]) for row in rows]
    for step, (enc, plain) in enumerate(zip(encrypted, plaintext, strict=True)):
        assert abs(enc - plain) <= 0.02, f"iteration {step}: {enc} vs {plain}"
    assert encrypted[-1] < encrypted[0] / 10, "the loss goes down"
