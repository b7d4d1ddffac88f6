"""Optional packages and shared data: a skip on a dev machine, a failure under CI=true."""

import pytest
from conftest import require, shared_data

ABSENT = "seg_no_such_package"  # importing it fails


def test_a_missing_package_skips_on_a_dev_machine(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pip install nothing"):
        require(ABSENT, "pip install nothing")


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_a_missing_package_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="under CI=true"):
        require(ABSENT, "pip install nothing")
    with pytest.raises(pytest.fail.Exception, match="under CI=true"):
        shared_data("no_such_dataset")


def test_a_present_package_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require("json", "-").dumps([1]) == "[1]"
