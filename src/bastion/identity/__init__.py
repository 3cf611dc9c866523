"""Who is connecting: users, groups, identity kinds, SCRAM verifiers and OIDC tokens."""
