"""Signals sent on every call transition (connect receivers in your AppConfig.ready()).

Each is sent with ``sender=Call`` once the transition is committed, from the process
that made it; exactly one process sends each, even when several raced for it.
"""

from django.dispatch import Signal

# A call was placed and rings on the callee's connection (status "initiated").
# Arguments: call (Call).
call_initiated = Signal()

# The callee's client reported that it is ringing (status "ringing").
# Arguments: call (Call).
call_ringing = Signal()

# The callee answered (status "answered"; call.answered_at set).
# Arguments: call (Call).
call_answered = Signal()

# The call reached a final status: over, declined, missed, cancelled, busy or failed.
# Arguments: call (Call), status (str, a CallStatus value), reason (str, an EndReason
# value), duration (datetime.timedelta or None: talk time of an answered call).
call_ended = Signal()

# A party's browser reported what it measured during an answered call (its quality
# summary, docs/protocol.md "Quality and feedback"), stored on ``call.quality[role]``.
# The party that hangs up reports with its hangup: this signal comes just before that
# call's call_ended, whose call carries the summary too; the other party's comes after.
# Arguments: call (Call), role ("caller" or "callee"), summary (dict).
call_quality_reported = Signal()

# A party rated an answered call that ended (accounts that ask for feedback).
# Arguments: call (Call), feedback (CallFeedback: role, score 1-5, issues).
call_feedback_posted = Signal()
