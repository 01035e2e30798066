"""The live side of the device: frames from a source, through the reader, to the outputs.

- `sink`: `Frame` and `Sink`, the contract between the loop and its outputs (imports nothing above `read`);
- `sources`: cameras, video, streams, image folders, synthetic scenes;
- `stabilizer`: a reading reported once it holds for K frames;
- `loop`: `LiveLoop` and the one shutdown path, `run_until_stopped`.
"""
