"""The PostgreSQL frontend/backend protocol, version 3.0, as a sans-IO codec."""
