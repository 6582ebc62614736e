"""rich renderables for headless output. Reads report dicts (the JSON form), never the engine's objects."""
