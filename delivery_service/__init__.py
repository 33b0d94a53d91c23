"""examserver delivery service: the stateless worker that runs timed exams."""
