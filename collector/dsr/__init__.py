"""Data-subject requests: find, export and erase one person's data; the request log."""
