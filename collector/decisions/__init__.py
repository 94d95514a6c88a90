"""Personalization decisions computed locally: profiles, rules, recommendations."""
