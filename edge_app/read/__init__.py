"""Reading pictures (PaddleOCR's shape: a region finder, then a CTC recognizer per region):

- `reading`: `Digit`, `Reading`, the `Reader` protocol;
- `pipeline`: `DigitReader`, the one learned reader, on grey frames;
- `layout`: the one grouping of read regions into lines and numbers;
- `table`: `TableReader`, a ruled table read cell by cell with the reader's recognizer (`read --table`);
- `annotate`: a reading drawn on its frame;
- `images`: the one image decoder, bounded work for any file or upload.
"""

from edge_app.read.annotate import annotate
from edge_app.read.pipeline import DigitReader, crop_roi, parse_roi
from edge_app.read.reading import Digit, Reader, Reading

__all__ = ["Digit", "DigitReader", "Reader", "Reading", "annotate", "crop_roi", "parse_roi"]
