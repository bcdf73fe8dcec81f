"""client.block(cuid) in real Chromium (issue 13): the callee's page blocks a caller, whose
call() is then refused with ERR_CALL_NOT_ALLOWED, as a can_call refusal; nothing rings."""

from __future__ import annotations

from playwright.sync_api import expect

from directcall.models import Block, Call
from tests.e2e.sdk import outcome, screen, sign_in, start_call


def test_a_blocked_caller_is_refused_and_nothing_rings(new_user, e2e_account):
    acct, key = e2e_account()
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    assert (
        sam.page.evaluate("() => window.dc.block('tutor_jane').then((v) => v ?? 'done')") == "done"
    )
    assert [(b.blocker.cuid, b.blocked.cuid) for b in Block.objects.all()] == [
        ("student_sam", "tutor_jane")
    ]
    start_call(jane, "student_sam", "Tutor is calling")
    assert outcome(jane)["rejected"]["code"] == "ERR_CALL_NOT_ALLOWED"
    expect(screen(sam, "incoming")).to_be_hidden()
    assert not Call.objects.exists()
    # One way only: sam may still call jane.
    start_call(sam, "tutor_jane", "Student is calling")
    expect(screen(jane, "incoming")).to_be_visible()
    # An invalid cuid is refused by the SDK itself.
    refused = sam.page.evaluate(
        "() => window.dc.block('x').then(() => null, (error) => error.code)"
    )
    assert refused == "ERR_INVALID_CALL_PARAMETERS"
    jane.assert_no_errors()
