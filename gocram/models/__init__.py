"""The GPT and the registries its parts are chosen from by name."""
