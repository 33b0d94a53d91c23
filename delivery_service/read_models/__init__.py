"""What the use cases return and the edge serves as is, by resource: REST replies and the
socket messages that carry the same shapes, each defined once."""
