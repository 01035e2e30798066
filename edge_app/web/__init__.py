"""The web view: a small web app served from the device for field users with a phone.

`digitlite serve` (and `digitlite run --web`) serve one page with the live annotated stream, photo upload
and a digit-drawing canvas, plus a JSON API. Modules:

- `uploads`: the declared content type of an upload, and turning a drawing into an MNIST-style crop (the
  bytes are decoded by `edge_app.read.images`, the decoder `digitlite read` uses too). Pillow, OpenCV, numpy only.
- `live`: `WebStream`, the live loop's sink for the page (`edge_app.live.loop`: the one loop of every live mode):
  one annotated JPEG per frame for the stream, the newest and the stable reading.
- `app`: the FastAPI application (routes, token check, body limits and upload slots). Needs the `[web]` extra.
- `server`: `digitlite serve` and `LiveWebView` for `digitlite run --web`; uvicorn in the foreground or a
  thread.
- `static/`: the page, plain HTML/JS/CSS with no build step.

Importing this package needs nothing beyond the `[edge]` extra.

    digitlite serve --source synthetic --port 8080     # then open http://127.0.0.1:8080/
"""
