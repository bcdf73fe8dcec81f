"""directcall.validation against the shared cases file (the browser SDK reads it too)."""

from __future__ import annotations

import pytest

from directcall import errors, validation
from directcall.errors import DirectCallError

RULES = {
    "cuid": validation.is_valid_cuid,
    "name": validation.is_valid_name,
    "context": validation.is_valid_context,
    "url": validation.is_valid_url,
    "accountId": validation.is_valid_account_id,
    "apikey": validation.is_valid_api_key,
    "deviceId": validation.is_valid_device_id,
    "userToken": validation.is_valid_user_token,
}


def test_every_rule_has_cases(validation_cases):
    assert set(RULES) <= set(validation_cases)
    for name in RULES:
        assert validation_cases[name]["valid"] and validation_cases[name]["invalid"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_valid_cases_pass(rule, validation_cases):
    failing = [v for v in validation_cases[rule]["valid"] if not RULES[rule](v)]
    assert failing == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_invalid_cases_fail(rule, validation_cases):
    passing = [v for v in validation_cases[rule]["invalid"] if RULES[rule](v)]
    assert passing == []


def test_limits_match_the_module(validation_cases):
    limits = validation_cases["limits"]
    assert limits["cuid"] == [validation.CUID_MIN, validation.CUID_MAX]
    assert limits["name"] == [validation.NAME_MIN, validation.NAME_MAX]
    assert limits["context_max"] == validation.CONTEXT_MAX
    assert limits["url_max"] == validation.URL_MAX


def test_context_length_bound(validation_cases):
    too_long = validation_cases["context"]["invalid_length"]
    assert validation.is_valid_context("x" * (too_long - 1))
    assert not validation.is_valid_context("x" * too_long)


def test_url_length_bound():
    base = "https://example.com/"
    assert validation.is_valid_url(base + "a" * (validation.URL_MAX - len(base)))
    assert not validation.is_valid_url(base + "a" * (validation.URL_MAX - len(base) + 1))


def test_cuid_is_case_sensitive_but_valid_either_way():
    assert validation.is_valid_cuid("Tutor_Jane") and validation.is_valid_cuid("tutor_jane")


class TestCleanInitParams:
    base = {"accountId": "acct_1", "apikey": "abcd.efgh", "cuid": "tutor_jane"}

    def test_minimal_is_accepted(self):
        params = validation.clean_init_params(dict(self.base))
        assert params.cuid == "tutor_jane" and params.name is None and params.device_id is None

    def test_name_is_trimmed_and_blank_optionals_are_absent(self):
        params = validation.clean_init_params(
            {**self.base, "name": "  Jane  ", "ringtone": "", "ctId": None}
        )
        assert params.name == "Jane" and params.ringtone is None and params.ct_id is None

    @pytest.mark.parametrize("key", ["accountId", "apikey", "cuid"])
    @pytest.mark.parametrize("blank", [None, "", "   ", "<absent>"])
    def test_missing_required(self, key, blank):
        data = dict(self.base)
        if blank == "<absent>":
            del data[key]
        else:
            data[key] = blank
        with pytest.raises(DirectCallError) as info:
            validation.clean_init_params(data)
        assert info.value.code == errors.MISSING_INITPARAMETERS
        assert key in info.value.message

    @pytest.mark.parametrize(
        "key,value",
        [
            ("cuid", "91_8899555"),
            ("cuid", 12345),
            ("accountId", "a b"),
            ("apikey", "x y"),
            ("name", "ab"),
            ("ringtone", "javascript:alert(1)"),
            ("deviceId", "short"),
            ("ctId", "has space"),
            ("ctAccountId", "a/b"),
        ],
    )
    def test_invalid(self, key, value):
        with pytest.raises(DirectCallError) as info:
            validation.clean_init_params({**self.base, key: value})
        assert info.value.code == errors.INVALID_INITPARAMETERS
        assert key in info.value.message

    @pytest.mark.parametrize("body", [[], "text", 5, None])
    def test_body_must_be_an_object(self, body):
        with pytest.raises(DirectCallError) as info:
            validation.clean_init_params(body)
        assert info.value.code == errors.INVALID_INITPARAMETERS


class TestCleanCallParams:
    def test_valid(self):
        params = validation.clean_call_params(
            "grocer_01", "  Grocer is calling ", {"receiver_image": "https://x.org/a.png"}
        )
        assert params.context == "Grocer is calling"
        assert params.receiver_image == "https://x.org/a.png"
        assert params.initiator_image is None

    def test_empty_image_strings_mean_no_image(self):
        params = validation.clean_call_params(
            "grocer_01", "hi", {"receiver_image": "", "initiator_image": ""}
        )
        assert params.receiver_image is None and params.initiator_image is None

    @pytest.mark.parametrize(
        "receiver,context,options,bad",
        [
            ("91_8899555", "hi", None, "receiver"),
            (None, "hi", None, "receiver"),
            ("grocer_01", "", None, "context"),
            ("grocer_01", "x" * 281, None, "context"),
            ("grocer_01", "hi", "not a dict", "callOptions"),
            ("grocer_01", "hi", {"receiver_image": "javascript:alert(1)"}, "receiver_image"),
            ("grocer_01", "hi", {"initiator_image": "data:image/png;base64,AA"}, "initiator_image"),
        ],
    )
    def test_invalid(self, receiver, context, options, bad):
        with pytest.raises(DirectCallError) as info:
            validation.clean_call_params(receiver, context, options)
        assert info.value.code == errors.INVALID_CALL_PARAMETERS
        assert bad in info.value.message
