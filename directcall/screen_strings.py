"""The texts the browser SDK writes into the call screens, translated with Django's i18n.

The screens' markup (``directcall/screens.html``) carries them as JSON
(``{% directcall_screen_strings %}``), translated into the language the markup is
rendered in; the SDK reads them with ``screens.t(key, params)``. Placeholders are
Python's ``%(name)s``, which ``msgfmt`` checks in every catalog.

A module that shows text in the screens adds an entry here (a camelCase key, a
``pgettext_lazy("call screen", ...)`` value) and its translations to the catalogs under
``directcall/locale/`` (``scripts/messages.sh``); ``tests/test_locale.py`` fails while a
shipped language lacks one.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy

# Every screen text has the context "call screen" (a literal: xgettext reads it), so that a
# host project's own translation of "Cancel" or "Answer", which takes precedence over an
# app's, cannot replace the screens' words.

SCREEN_STRINGS: dict[str, Promise] = {
    # Status lines.
    "calling": pgettext_lazy("call screen", "Calling…"),
    "ringing": pgettext_lazy("call screen", "Ringing…"),
    "connecting": pgettext_lazy("call screen", "Connecting…"),
    "reconnecting": pgettext_lazy("call screen", "Reconnecting…"),
    "incoming": pgettext_lazy("call screen", "Incoming call"),
    # The browser notification of a call ringing in a hidden tab.
    "notification": pgettext_lazy("call screen", "Incoming call"),
    # Buttons (visible text) the SDK changes.
    "mute": pgettext_lazy("call screen", "Mute"),
    "unmute": pgettext_lazy("call screen", "Unmute"),
    "enableAudio": pgettext_lazy("call screen", "Tap to enable audio"),
    # Accessible names of the buttons: each starts with the button's visible text
    # (WCAG 2.5.3, label in name) and says whose call it is.
    "answerLabel": pgettext_lazy("call screen", "Answer the call from %(name)s"),
    "declineLabel": pgettext_lazy("call screen", "Decline the call from %(name)s"),
    "cancelLabel": pgettext_lazy("call screen", "Cancel the call to %(name)s"),
    "hangupLabel": pgettext_lazy("call screen", "Hang up the call with %(name)s"),
    "muteLabel": pgettext_lazy("call screen", "Mute the microphone"),
    "unmuteLabel": pgettext_lazy("call screen", "Unmute the microphone"),
    # Said to screen readers (the screens' aria-live region) as the call changes.
    "announceCalling": pgettext_lazy("call screen", "Calling %(name)s"),
    "announceIncoming": pgettext_lazy("call screen", "Incoming call from %(name)s"),
    "announceConnected": pgettext_lazy("call screen", "Call connected with %(name)s"),
    "announceMuted": pgettext_lazy("call screen", "Microphone muted"),
    "announceUnmuted": pgettext_lazy("call screen", "Microphone on"),
    "announceReconnected": pgettext_lazy("call screen", "Connection restored"),
    "announceEnded": pgettext_lazy("call screen", "Call ended"),
    # The caller's screen after an unanswered call, for a few seconds ("Call ended" after an
    # answered one; an error's own message after a failed one, "Call failed" when it has none).
    "declined": pgettext_lazy("call screen", "Declined"),
    "busy": pgettext_lazy("call screen", "Busy"),
    "noAnswer": pgettext_lazy("call screen", "No answer"),
    "callFailed": pgettext_lazy("call screen", "Call failed"),
    # The button that closes that screen before its time.
    "close": pgettext_lazy("call screen", "Close"),
    # Quality, devices and feedback (widgets.js, issue 15). The indicator's accessible name:
    "connectionLabel": pgettext_lazy("call screen", "Connection quality: %(bars)s of 5"),
    # A short notice while a quality warning is up (network; or a silent microphone).
    "weakConnection": pgettext_lazy("call screen", "Weak connection"),
    "silentMicrophone": pgettext_lazy("call screen", "Your microphone seems silent"),
    # The device picker of the ongoing screen.
    "audioDevices": pgettext_lazy("call screen", "Audio devices"),
    "microphone": pgettext_lazy("call screen", "Microphone"),
    "speaker": pgettext_lazy("call screen", "Speaker"),
    "defaultDevice": pgettext_lazy("call screen", "Default"),
    "announceMicrophone": pgettext_lazy("call screen", "Microphone: %(name)s"),
    "announceSpeaker": pgettext_lazy("call screen", "Speaker: %(name)s"),
    # The rating prompt after a call (accounts that ask for feedback).
    "rateCall": pgettext_lazy("call screen", "How was the call with %(name)s?"),
    "rateScore": pgettext_lazy("call screen", "%(score)s of 5"),
    "feedbackIssues": pgettext_lazy("call screen", "What went wrong?"),
    "issueAudioLatency": pgettext_lazy("call screen", "Audio delay"),
    "issueChoppyAudio": pgettext_lazy("call screen", "Choppy audio"),
    "issueDroppedCall": pgettext_lazy("call screen", "Dropped call"),
    "issueEcho": pgettext_lazy("call screen", "Echo"),
    "issueNoisyCall": pgettext_lazy("call screen", "Noise"),
    "issueOneWayAudio": pgettext_lazy("call screen", "Only one of us could hear"),
    "sendFeedback": pgettext_lazy("call screen", "Send"),
    "skipFeedback": pgettext_lazy("call screen", "Not now"),
    "announceFeedbackThanks": pgettext_lazy("call screen", "Thank you for your feedback"),
}


def screen_strings() -> dict[str, str]:
    """Every screen text, translated into the active language."""
    return {key: str(text) for key, text in SCREEN_STRINGS.items()}
