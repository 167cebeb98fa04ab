"""The Python side of the contract: the same fixtures as test/unit/contract.test.ts."""
import glob
import json
import os

import pytest

from sandbox import contract

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "contract")


def cases(kind: str, validity: str):
    paths = sorted(glob.glob(os.path.join(FIXTURES, kind, validity, "*.json")))
    assert paths, f"no fixtures for {kind}/{validity}"
    return [pytest.param(p, id=os.path.basename(p)) for p in paths]


def load(path: str):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("path", cases("payload", "valid"))
def test_valid_payload(path):
    out = contract.validate_payload(load(path))
    assert out["action"] in ("execute", "probe")


@pytest.mark.parametrize("path", cases("payload", "invalid"))
def test_invalid_payload(path):
    with pytest.raises(contract.ContractError):
        contract.validate_payload(load(path))


@pytest.mark.parametrize("path", cases("result", "valid"))
def test_valid_result(path):
    contract.validate_result(load(path))


@pytest.mark.parametrize("path", cases("result", "invalid"))
def test_invalid_result(path):
    with pytest.raises(contract.ContractError):
        contract.validate_result(load(path))


def test_default_action_is_filled_in():
    assert contract.validate_payload({"version": 1, "request_id": "r", "code": ""})["action"] == "execute"


def test_error_names_the_field():
    with pytest.raises(contract.ContractError, match=r"limits\.memory_mb"):
        contract.validate_payload({"version": 1, "request_id": "r", "code": "", "limits": {"memory_mb": 1}})


def test_unknown_schema_keyword_is_refused_at_load():
    with pytest.raises(ValueError, match="unsupported"):
        contract._check_keywords({"type": "string", "format": "email"})
