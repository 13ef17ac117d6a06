"""objvid studio: place objects and author the camera path by eye, in the browser (``objvid-client studio``).

A viser web app that is one more client of the services (through ``objvid.client.sdk``). Pure parts:
``path`` (keyframe interpolation), ``pose`` (object poses), ``coalesce`` (latest-wins preview work);
``session`` holds the shared state; ``app`` / ``generate_panel`` are the page; ``server`` serves it.
"""
