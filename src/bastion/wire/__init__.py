"""Pure wire codecs: bytes in, typed messages out, and back. No asyncio, no policy, no imports
from the rest of Bastion."""
