"""Approvals: statements held for a human decision, the people who decide, and notifications."""
