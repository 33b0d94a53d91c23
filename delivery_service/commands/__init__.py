"""The operator's commands that act on the data (`examserver create-user`, `revoke-tokens`,
`import-users`), each against the configured database and Redis through offline.py; cli.py
parses the command line and hands over."""
