"""A real Django app for the middleware tests (sentry-python's ``myapp`` shape)."""
