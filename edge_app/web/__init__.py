"""The web view: a small web app served from the device for field users with a phone.

`digitlite serve` (and `digitlite run --web`) serve one page with the live annotated stream, photo upload
and a digit-drawing canvas, plus a JSON API. Modules:

- `uploads`: checking and decoding untrusted image bytes (size, pixel count, type), and turning a drawing
  into an MNIST-style crop. Pillow, OpenCV and numpy only.
- `live`: the live loop in a thread: frames from a source through the reader, annotated JPEGs for the
  stream, the stable reading and the last readings.
- `app`: the FastAPI application (routes, token check, body limit). Needs the `[web]` extra.
- `server`: `digitlite serve` and `serve_live` for `digitlite run --web`; uvicorn in the foreground or a thread.
- `static/`: the page, plain HTML/JS/CSS with no build step.

Importing this package needs nothing beyond the `[edge]` extra.

    digitlite serve --source synthetic --port 8080     # then open http://127.0.0.1:8080/
"""
