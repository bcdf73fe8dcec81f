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
