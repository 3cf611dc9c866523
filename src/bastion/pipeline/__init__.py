"""The governance pipeline: identify -> analyze -> decide -> forward -> mask plan -> audit.

Each stage has typed inputs and outputs and a `typing.Protocol` so later features replace a
stage without touching the protocol code that drives it."""
