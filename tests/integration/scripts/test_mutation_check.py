"""scripts/mutation_check.py: the list of plausible bugs stays valid as the code changes, and (slow
tier) the suite catches every one of them."""

from __future__ import annotations

import pytest

from conftest import ROOT, load_script


def test_every_mutation_names_text_that_occurs_once_in_its_file(monkeypatch):
    check = load_script("mutation_check", monkeypatch)
    assert len(check.MUTATIONS) >= 15
    for mutation in check.MUTATIONS:
        text = (ROOT / "src" / "transferlab" / mutation.path).read_text()
        assert text.count(mutation.old) == 1, mutation.name
        assert mutation.new != mutation.old
        assert all((ROOT / t.split("::")[0]).is_file() for t in mutation.tests), mutation.name


@pytest.mark.slow
def test_the_suite_catches_every_planted_bug(monkeypatch, capsys):
    check = load_script("mutation_check", monkeypatch)
    assert check.main([]) == 0, capsys.readouterr().out
