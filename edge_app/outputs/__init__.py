"""The live loop's outputs, each a `edge_app.live.sink.Sink`: `local` (stdout JSON lines, the video file, the
preview window), `mqtt` (the outbox publisher), `homeassistant` (MQTT discovery and state)."""
