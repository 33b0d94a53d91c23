"""The HTTP and WebSocket edges: thin, mapping requests to services and errors to statuses."""
