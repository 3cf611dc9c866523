"""Client sessions: the sans-IO PostgreSQL relay state machine and the asyncio driver that
feeds it bytes."""
