"""directcall.protocol.decode: a frame's text to its JSON value, lone surrogates refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from directcall import errors, protocol
from directcall.errors import DirectCallError

LIMIT = 65536


@given(st.text())
@example("plain ascii, no escape")
@example('{"sdp": "v=0\\r\\n"}')
@example('{"x": "\\ud800"}')
@example('{"x": "\\uDFFF"}')
@example('{"x": "\\u00e9"}')
@example('{"x": "\\\\ud800"}')  # an escaped backslash then "ud800": the regex says maybe
@example("é\ud800")
@example("é, no surrogate")
def test_the_quick_check_agrees_with_the_regular_expression(text):
    expected = protocol._MAY_HOLD_SURROGATES.search(text) is not None
    assert protocol._may_hold_surrogates(text) is expected


@given(st.text())
def test_any_json_text_decodes_or_is_refused_as_not_utf8(value):
    """``json.dumps`` writes a lone surrogate as a ``\\udXXX`` escape in ASCII text: the
    frame is refused exactly when the value holds one."""
    text = json.dumps({"type": "candidate", "ref": "r1", "value": value})
    try:
        value.encode()
    except UnicodeEncodeError:
        with pytest.raises(DirectCallError) as refused:
            protocol.decode(text, None, LIMIT)
        assert refused.value.code == errors.BAD_FRAME
        assert refused.value.frame == {"type": "candidate", "ref": "r1"}
    else:
        assert protocol.decode(text, None, LIMIT)["value"] == value


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "invite", "context": "\\ud83d"}',  # a high surrogate alone, escaped
        '{"type": "invite", "context": "\\uDE00 and more"}',  # a low one, upper case
        '{"type": "invite", "context": "é\ud800"}',  # the character itself, non-ASCII text
    ],
)
def test_a_lone_surrogate_is_refused(text):
    with pytest.raises(DirectCallError) as refused:
        protocol.decode(text, None, LIMIT)
    assert refused.value.code == errors.BAD_FRAME


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ('{"type": "invite", "context": "\\ud83d\\ude00"}', "\U0001f600"),  # a pair, escaped
        ('{"type": "invite", "context": "\U0001f600 é"}', "\U0001f600 é"),
        ('{"type": "invite", "context": "\\u00e9t\\u00e9"}', "été"),
    ],
)
def test_text_without_a_lone_surrogate_is_accepted(text, context):
    assert protocol.decode(text, None, LIMIT)["context"] == context
