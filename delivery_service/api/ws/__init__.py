"""The WebSocket edge: the attempt socket and the session socket, their protocols, and what
every socket of ours shares (the handshake, ownership, bus subscriptions, one reader and one
writer per connection)."""
