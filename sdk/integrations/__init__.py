"""Web framework integrations: one module per framework, each behind its extra."""
