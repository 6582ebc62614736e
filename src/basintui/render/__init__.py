"""rich renderables for headless output. Read the typed report (basintui.schema.Report and its section
Structs), never the engine's objects and never a dict by key."""
