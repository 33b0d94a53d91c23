"""Infrastructure that proves who is calling: password hashes, JWTs and device cookies."""
