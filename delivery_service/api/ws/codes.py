"""The codes our sockets close with (documented in docs/api.md), and when each is sent.

The client reads the code to decide what to do next, so each one means one thing.
"""

#: no valid ticket or `auth` message, or the user's tokens were revoked: sign in again
CLOSE_UNAUTHORIZED = 4401
#: admitted nowhere: not this user's session or attempt, or the Safe Exam Browser check failed
CLOSE_FORBIDDEN = 4403
#: the attempt or session does not exist (for this user)
CLOSE_NOT_FOUND = 4404
#: no message (not even a heartbeat) for too long: reconnect
CLOSE_HEARTBEAT = 4408
#: a newer socket (another tab or device, on any worker) took over: this one ends
CLOSE_SUPERSEDED = 4409
#: a foreign Origin, or invalid messages that kept coming
CLOSE_POLICY = 1008
#: busy (accept rate, greeting slots, a backend) or too slow to keep up: reconnect with backoff
CLOSE_OVERLOADED = 1013
#: this worker is restarting or draining: reconnect, to another worker
CLOSE_RESTART = 1012
