"""directcall.callsql's statements: named parameters, and values that only look like SQL."""

from __future__ import annotations

import pytest

from directcall import calls, callsql
from directcall.models import Call, CallStatus
from directcall.validation import clean_call_params

pytestmark = pytest.mark.django_db

LOOKALIKE = "50 %s off, %(p0)s :p1 ? %% '); --"


def test_marks_are_named_in_order():
    sql, names = callsql._named("UPDATE t SET a = %s WHERE id = %s AND s IN (%s, %s)")
    assert sql == "UPDATE t SET a = %(p0)s WHERE id = %(p1)s AND s IN (%(p2)s, %(p3)s)"
    assert names == ("p0", "p1", "p2", "p3")
    assert callsql._named("SELECT 1") == ("SELECT 1", ())


def test_values_that_look_like_marks_are_stored_as_they_are(people):
    """The values are bound by the driver, never formatted into the statement: a context
    full of marks goes in and comes back unchanged through the insert, the busy check,
    the conditional update and its RETURNING row."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = calls.start(jane.pk, clean_call_params("student_sam", LOOKALIKE))
    assert Call.objects.get(pk=call.pk).context == LOOKALIKE
    rung = calls.ring(call.pk, sam.pk)
    assert rung is not None and rung.status == CallStatus.RINGING
    assert rung.context == LOOKALIKE
    assert callsql.in_live_calls([jane.pk, sam.pk]) == {jane.pk, sam.pk}
