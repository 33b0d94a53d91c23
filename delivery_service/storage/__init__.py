"""PostgreSQL (SQLite embedded) through SQLAlchemy 2 async: models, engine, migrations."""
