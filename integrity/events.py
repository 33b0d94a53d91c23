"""What can happen to an attempt, named once.

Three sources write to the ledger: the candidate's browser (`candidate`), the server observing or
deciding something (`server`) and a member of staff acting on a candidate (`staff`). The names are
the wire names the candidate app sends and the types the proctor console receives.
"""

from __future__ import annotations

from typing import Literal

Source = Literal["candidate", "server", "staff"]

# Reported by the candidate app's sensors (source 001 pattern 5, source 002).
TAB_HIDDEN = "tab_hidden"
TAB_VISIBLE = "tab_visible"
FULLSCREEN_EXIT = "fullscreen_exit"
FULLSCREEN_ENTER = "fullscreen_enter"
TAB_VIOLATION = "tab_violation"  # source 002's name for a whole tab switch, sent on return
TEXT_HIGHLIGHTED = "text_highlighted"
COPY_PASTE = frozenset({"copy", "cut", "paste"})

CANDIDATE_KINDS = frozenset(
    {
        TAB_HIDDEN,
        TAB_VISIBLE,
        "window_blur",
        "window_focus",
        FULLSCREEN_EXIT,
        FULLSCREEN_ENTER,
        *COPY_PASTE,
        "context_menu",
        "keyboard_shortcut",
        "network_offline",
        "network_online",
        TAB_VIOLATION,
        TEXT_HIGHLIGHTED,
    }
)

# Seen by the server on the candidate's behalf.
CONNECTION_OPENED = "connection_opened"
RECONNECTED = "reconnect"
SUPERSEDED = "connection_superseded"
LATE_ANSWER_REFUSED = "late_answer_refused"
SEB_CHECK_FAILED = "seb_check_failed"
NETWORK_REFUSED = "network_refused"  # a request from outside the test's allowed networks

# Decided by the server.
ATTEMPT_CREATED = "attempt_created"
ATTEMPT_STARTED = "attempt_started"
ANSWER_SAVED = "answer_saved"
LOGIN = "login"
TICKET_ISSUED = "ticket_issued"
VIOLATION = "violation"

# Staff actions (the audit trail) are recorded under their own names (attempt_paused,
# attempt_resumed, session_cancelled, session_deleted, notice_sent, lockdown_changed, …). Those that
# change a candidate's outcome need a reason; a pause is undone by a resume, so its reason is
# optional.
STAFF_ACTIONS_NEEDING_REASON = frozenset(
    {
        "time_extended",
        "attempt_terminated",
        "session_force_completed",
        "accommodation_set",
        "grade_changed",
    }
)
